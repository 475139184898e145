//! Git submodules, as Fleet clones with them: a commit's gitlinks with their `.gitmodules`
//! entries, each fetched from its repository (relative URLs resolved, the superproject's
//! credentials and TLS) and exported at the commit the superproject records, up to
//! [`MAX_SUBMODULE_DEPTH`] levels deep.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use git2::{TreeWalkMode, TreeWalkResult};

use crate::git::{self, GitError, Reference, Source};

/// A submodule of a commit: where it goes, its repository and its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submodule {
    pub path: String,
    pub url: String,
    pub commit: String,
}

/// How deep submodules of submodules are followed.
pub const MAX_SUBMODULE_DEPTH: usize = 5;

/// [`git::fetch`], and the submodules of `commit` (and theirs), each from
/// its repository with the same credentials and TLS settings, as Fleet clones with submodules.
pub fn fetch(
    cache_root: &Path,
    source: &Source,
    commit: &str,
    cancel: &AtomicBool,
) -> Result<PathBuf, GitError> {
    let path = git::fetch(cache_root, source, commit, cancel)?;
    let mut pending = vec![(path.clone(), source.url.clone(), commit.to_owned(), 0)];
    while let Some((repo_path, url, commit, depth)) = pending.pop() {
        for module in submodules(&repo_path, &commit, &url)? {
            if depth >= MAX_SUBMODULE_DEPTH {
                break;
            }
            let sub = Source {
                url: module.url.clone(),
                reference: Reference::Revision(module.commit.clone()),
                ..source.clone()
            };
            let sub_path = git::fetch(cache_root, &sub, &module.commit, cancel)?;
            pending.push((sub_path, module.url, module.commit, depth + 1));
        }
    }
    Ok(path)
}

/// [`git::export`], and each submodule's commit into its path (fetched
/// before by [`fetch`] into `cache_root`).
pub fn export(
    cache_root: &Path,
    repo_path: &Path,
    url: &str,
    commit: &str,
    dest: &Path,
    max_blob: u64,
) -> Result<(), GitError> {
    let mut pending = vec![(
        repo_path.to_owned(),
        url.to_owned(),
        commit.to_owned(),
        dest.to_owned(),
        0,
    )];
    while let Some((repo_path, url, commit, dest, depth)) = pending.pop() {
        git::export(&repo_path, &commit, &dest, max_blob)?;
        if depth >= MAX_SUBMODULE_DEPTH {
            continue;
        }
        for module in submodules(&repo_path, &commit, &url)? {
            let target = dest.join(&module.path);
            std::fs::create_dir_all(&target).map_err(|e| GitError::Cache {
                path: target.clone(),
                message: e.to_string(),
            })?;
            let sub_path = cache_root.join(git::cache_name(&module.url));
            pending.push((sub_path, module.url, module.commit, target, depth + 1));
        }
    }
    Ok(())
}

/// The submodules of `commit`: its tree's gitlinks with their `.gitmodules` entries (URLs
/// relative to `url`, the repository's own, resolved).
pub fn submodules(repo_path: &Path, commit: &str, url: &str) -> Result<Vec<Submodule>, GitError> {
    let cache_error = |message: String| GitError::Cache {
        path: repo_path.to_owned(),
        message,
    };
    let repo = git::open_cache(repo_path)?;
    let tree = git::commit_tree(&repo, repo_path, commit)?;
    let mut links = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        if entry.filemode() == 0o160000
            && let Ok(name) = entry.name()
        {
            links.push((format!("{parent}{name}"), entry.id().to_string()));
        }
        TreeWalkResult::Ok
    })
    .map_err(|e| cache_error(e.message().to_owned()))?;
    if links.is_empty() {
        return Ok(Vec::new());
    }
    let gitmodules = tree
        .get_path(Path::new(".gitmodules"))
        .and_then(|entry| repo.find_blob(entry.id()))
        .map_err(|_| cache_error("submodules without a .gitmodules file".to_owned()))?;
    let declared = parse_gitmodules(&String::from_utf8_lossy(gitmodules.content()));
    links
        .into_iter()
        .map(|(path, commit)| {
            let module_url = declared
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, u)| resolve_url(url, u))
                .ok_or_else(|| cache_error(format!("submodule {path} is not in .gitmodules")))?;
            Ok(Submodule {
                path,
                url: module_url,
                commit,
            })
        })
        .collect()
}

/// (path, url) of each `[submodule]` section of a `.gitmodules` file.
fn parse_gitmodules(text: &str) -> Vec<(String, String)> {
    let mut modules = Vec::new();
    let (mut path, mut url) = (None::<String>, None::<String>);
    let mut flush = |path: &mut Option<String>, url: &mut Option<String>| {
        if let (Some(p), Some(u)) = (path.take(), url.take()) {
            modules.push((p, u));
        }
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut path, &mut url);
        } else if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').to_owned();
            match key.trim() {
                "path" => path = Some(value.trim_end_matches('/').to_owned()),
                "url" => url = Some(value),
                _ => {}
            }
        }
    }
    flush(&mut path, &mut url);
    modules
}

/// A submodule URL as git resolves it: `./x` and `../x` are relative to the superproject's
/// URL (each `../` drops one path segment of it).
fn resolve_url(base: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_owned();
    }
    let mut base = base.trim_end_matches('/').to_owned();
    let mut rest = url;
    loop {
        if let Some(tail) = rest.strip_prefix("./") {
            rest = tail;
        } else if let Some(tail) = rest.strip_prefix("../") {
            if let Some(cut) = base.rfind('/') {
                base.truncate(cut);
            }
            rest = tail;
        } else {
            break;
        }
    }
    format!("{base}/{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitmodules_and_relative_urls_are_read_as_git_reads_them() {
        let text = "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n[submodule \"x\"]\n\tpath = x/\n\turl = https://example.com/x.git\n";
        assert_eq!(
            parse_gitmodules(text),
            [
                ("vendor/lib".to_owned(), "../lib.git".to_owned()),
                ("x".to_owned(), "https://example.com/x.git".to_owned())
            ]
        );
        let base = "https://git.example/org/app.git";
        // (url in .gitmodules, resolved)
        let cases = [
            ("../lib.git", "https://git.example/org/lib.git"),
            ("./sub", "https://git.example/org/app.git/sub"),
            ("../../other/x", "https://git.example/other/x"),
            ("https://elsewhere/y.git", "https://elsewhere/y.git"),
        ];
        for (url, resolved) in cases {
            assert_eq!(resolve_url(base, url), resolved, "{url}");
        }
    }
}
