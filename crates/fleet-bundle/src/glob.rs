//! Go's `path/filepath.Match` and `Glob` semantics, which Fleet applies to GitRepo `paths`:
//! `*` and `?` never cross `/`, classes are `[abc]`, `[a-z]` and `[^abc]` (negation with `^`,
//! not `!`), `\` escapes, and there is no `**`. Crates like `glob` and `globset` differ on
//! exactly these points, so a small port keeps repositories behaving as under Fleet.

use std::path::Path;

/// A pattern that Go's `filepath.Match` refuses (`ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {pattern:?}")]
pub struct BadPattern {
    pub pattern: String,
}

/// Whether `name` matches the shell pattern `pattern`, as Go's `filepath.Match` on Unix.
pub fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let pattern_chars: Vec<char> = pattern.chars().collect();
    let name_chars: Vec<char> = name.chars().collect();
    match_here(&pattern_chars, &name_chars).map_err(|()| BadPattern {
        pattern: pattern.to_owned(),
    })
}

fn match_here(pattern: &[char], name: &[char]) -> Result<bool, ()> {
    let Some((&first, rest)) = pattern.split_first() else {
        return Ok(name.is_empty());
    };
    match first {
        '*' => {
            let rest = {
                let stars = rest.iter().take_while(|&&c| c == '*').count();
                &rest[stars..]
            };
            if rest.is_empty() {
                return Ok(!name.contains(&'/'));
            }
            for skip in 0..=name.len() {
                if skip > 0 && name[skip - 1] == '/' {
                    break;
                }
                if match_here(rest, &name[skip..])? {
                    return Ok(true);
                }
            }
            // Go still reports a malformed rest of the pattern.
            validate(rest)?;
            Ok(false)
        }
        '?' => match name.split_first() {
            Some((&c, name_rest)) if c != '/' => match_here(rest, name_rest),
            _ => validate(rest).map(|()| false),
        },
        '[' => {
            let (class_matches, after) = match name.first() {
                Some(&c) => class(rest, c)?,
                None => {
                    let (_, after) = class(rest, '\0')?;
                    return validate(after).map(|()| false);
                }
            };
            if class_matches && name[0] != '/' {
                match_here(after, &name[1..])
            } else {
                validate(after).map(|()| false)
            }
        }
        '\\' => {
            let Some((&escaped, rest)) = rest.split_first() else {
                return Err(());
            };
            literal(escaped, rest, name)
        }
        c => literal(c, rest, name),
    }
}

fn literal(c: char, rest: &[char], name: &[char]) -> Result<bool, ()> {
    match name.split_first() {
        Some((&n, name_rest)) if n == c => match_here(rest, name_rest),
        _ => validate(rest).map(|()| false),
    }
}

/// Checks that a pattern is well formed without matching it.
fn validate(pattern: &[char]) -> Result<(), ()> {
    let mut rest = pattern;
    while let Some((&c, tail)) = rest.split_first() {
        rest = match c {
            '\\' => tail.split_first().map(|(_, t)| t).ok_or(())?,
            '[' => class(tail, '\0')?.1,
            _ => tail,
        };
    }
    Ok(())
}

/// Parses a class body (after `[`) and tests `c` against it; returns the result and the
/// pattern after the closing `]`.
fn class(body: &[char], c: char) -> Result<(bool, &[char]), ()> {
    let (negated, mut rest) = match body.split_first() {
        Some((&'^', tail)) => (true, tail),
        _ => (false, body),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        match rest.split_first() {
            None => return Err(()),
            Some((&']', tail)) if !first => return Ok((matched != negated, tail)),
            _ => {}
        }
        first = false;
        let (lo, tail) = class_char(rest)?;
        rest = tail;
        let hi = if let Some((&'-', tail)) = rest.split_first() {
            let (hi, tail) = class_char(tail)?;
            rest = tail;
            hi
        } else {
            lo
        };
        if lo > hi {
            return Err(());
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

fn class_char(pattern: &[char]) -> Result<(char, &[char]), ()> {
    match pattern.split_first() {
        None | Some((&'-' | &']', _)) => Err(()),
        Some((&'\\', tail)) => tail.split_first().map(|(&c, t)| (c, t)).ok_or(()),
        Some((&c, tail)) => Ok((c, tail)),
    }
}

fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// The directories under `root` whose relative path matches `pattern` (Go's `filepath.Glob`
/// restricted to directories, as Fleet uses it for GitRepo `paths`), sorted. A leading `/` is
/// ignored; `.` and an empty pattern mean `root` itself.
pub fn glob_dirs(root: &Path, pattern: &str) -> Result<Vec<String>, BadPattern> {
    let pattern = pattern.trim_start_matches('/');
    let pattern = pattern.trim_end_matches('/');
    if pattern.is_empty() || pattern == "." {
        return Ok(vec![".".to_owned()]);
    }
    let mut candidates = vec![String::new()];
    for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        for base in &candidates {
            let dir = if base.is_empty() {
                root.to_owned()
            } else {
                root.join(base)
            };
            let join = |name: &str| {
                if base.is_empty() {
                    name.to_owned()
                } else {
                    format!("{base}/{name}")
                }
            };
            if !has_meta(component) {
                if dir.join(component).is_dir() {
                    next.push(join(component));
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect();
            names.sort();
            for name in names {
                if matches(component, &name)? {
                    next.push(join(&name));
                }
            }
        }
        candidates = next;
    }
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from Go's documented `filepath.Match` behaviour.
    #[test]
    fn matches_like_go() {
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[]a]", "]", Err(())),
            ("[-]", "-", Err(())),
            ("[x-]", "x", Err(())),
            ("[a-b-c]", "a", Err(())),
            ("[", "a", Err(())),
            ("[^", "a", Err(())),
            ("a[", "a", Err(())),
            ("a[", "ab", Err(())),
            ("*x", "xxx", Ok(true)),
            ("[!a]", "b", Ok(false)),
            ("[!a]", "!", Ok(true)),
        ];
        for (pattern, name, expected) in cases {
            let got = matches(pattern, name).map_err(|_| ());
            assert_eq!(&got, expected, "Match({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn globs_directories_only_sorted_per_level() {
        let tree = crate::testutil::TempTree::new(&[
            ("charts/a/x", ""),
            ("charts/b/nested/x", ""),
            ("apps/web/x", ""),
            (".hidden/x", ""),
            ("charts/file.yaml", "x: 1"),
        ]);
        let root = tree.root();
        let glob = |p: &str| glob_dirs(root, p).expect("valid pattern");
        assert_eq!(glob("charts/*"), ["charts/a", "charts/b"]);
        assert_eq!(
            glob("/charts/*"),
            ["charts/a", "charts/b"],
            "a leading / is ignored"
        );
        assert_eq!(glob("*/web"), ["apps/web"]);
        assert_eq!(glob("charts/b/nested"), ["charts/b/nested"]);
        assert!(glob("missing/*").is_empty());
        assert_eq!(glob("."), ["."]);
        assert_eq!(
            glob("*").first().map(String::as_str),
            Some(".hidden"),
            "Go's * matches dot files"
        );
        assert!(glob_dirs(root, "charts/[").is_err());
    }
}
