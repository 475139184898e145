//! OpenSSH `known_hosts` entries from a credentials Secret, to check an ssh server's host key
//! strictly (Fleet's default).
//!
//! Supported: `host[,host...] key-type base64-key [comment]`, hosts as `name` or
//! `[name]:port`. Hashed host names (`|1|...`) and `@cert-authority`/`@revoked` lines are
//! skipped: write plain host names into the Secret.

use base64::Engine as _;

/// One accepted host key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    hosts: Vec<String>,
    key_type: String,
    key: Vec<u8>,
}

/// Parsed `known_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('@'))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let hosts = fields.next()?;
                let key_type = fields.next()?;
                let key = base64::engine::general_purpose::STANDARD
                    .decode(fields.next()?)
                    .ok()?;
                Some(Entry {
                    hosts: hosts
                        .split(',')
                        .filter(|h| !h.starts_with('|'))
                        .map(host_name)
                        .collect(),
                    key_type: key_type.to_owned(),
                    key,
                })
            })
            .collect();
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `host` may present this key.
    pub fn allows(&self, host: &str, key_type: &str, key: &[u8]) -> bool {
        self.entries.iter().any(|entry| {
            entry.key_type == key_type && entry.key == key && entry.hosts.iter().any(|h| h == host)
        })
    }
}

/// `[name]:port` → `name`.
fn host_name(host: &str) -> String {
    match host.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((name, _port)) => name.to_owned(),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_bracketed_hosts_match_their_keys() {
        let known = KnownHosts::parse(
            "# comment\n\
             github.com,140.82.112.3 ssh-ed25519 AAEC\n\
             [git.local]:2222 ssh-rsa AQID comment\n\
             |1|abc=|def= ssh-rsa AQID\n\
             @cert-authority *.example ssh-rsa AQID\n",
        );
        assert!(known.allows("github.com", "ssh-ed25519", &[0, 1, 2]));
        assert!(known.allows("git.local", "ssh-rsa", &[1, 2, 3]));
        assert!(!known.allows("github.com", "ssh-rsa", &[0, 1, 2]));
        assert!(!known.allows("evil.example", "ssh-ed25519", &[0, 1, 2]));
        assert!(!known.allows("git.local", "ssh-rsa", &[9]));
    }
}
