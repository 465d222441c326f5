//! Who may do what over the control surfaces (control thread and the OSCQuery threads): which
//! patch files a client may load (those under the patch folders), which commands need the
//! control token, and which web origins and Host names OSCQuery answers. See docs/security.md.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

/// The folders whose patches OSC and MIDI program changes may load: the running patch's folder
/// (at the time of the request) and those named with `--patch-dir`.
#[derive(Debug, Clone, Default)]
pub struct PatchDirs {
    pub extra: Vec<PathBuf>,
}

impl PatchDirs {
    /// The patch file `given` names (relative to the running patch's folder), when it lies under
    /// a patch folder and is a regular file of a patch's size. The error names `given` as the
    /// client wrote it, says nothing of whether a path outside exists, and quotes no file.
    pub fn resolve(&self, running_patch: &Path, given: &str) -> Result<PathBuf, String> {
        let refused = || format!("`{given}` is not in a patch folder (the running patch's folder, or one named with --patch-dir)");
        let here = folder_of(running_patch);
        let wanted = normalize(&absolute(&here.join(given)));
        let dirs: Vec<PathBuf> = std::iter::once(here)
            .chain(self.extra.iter().cloned())
            .map(|d| absolute(&d))
            .collect();
        if !dirs.iter().any(|d| wanted.starts_with(normalize(d))) {
            return Err(refused());
        }
        // Inside by name: now follow links, and look again.
        let real = wanted
            .canonicalize()
            .map_err(|_| format!("`{given}`: cannot read the patch: no such file"))?;
        if !dirs.iter().filter_map(|d| d.canonicalize().ok()).any(|d| real.starts_with(d)) {
            return Err(refused());
        }
        stagebox_patches::read_source(&real).map_err(|e| format!("`{given}`: {e}"))?;
        Ok(real)
    }
}

fn folder_of(patch: &Path) -> PathBuf {
    patch
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

/// `p` with `.` and `..` resolved by name (links are not followed).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The commands that change what runs or stop it: they need the control token.
pub const GUARDED: &[&str] = &[
    "/stagebox/quit",
    "/stagebox/patch/load",
    "/stagebox/patch/reload",
    "/stagebox/learn/save",
    "/stagebox/models/load",
];

/// The control token and whether the server listens beyond loopback.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    pub token: Option<String>,
}

impl Guard {
    /// Whether a guarded command from `ip` with these string arguments may run. With a token,
    /// its last argument must be the token (`/stagebox/quit "TOKEN"`); without one, only
    /// clients on this machine may send it.
    pub fn allows(&self, ip: IpAddr, last_string_arg: Option<&str>) -> Result<(), String> {
        match &self.token {
            Some(t) if last_string_arg.is_some_and(|a| same(a, t)) => Ok(()),
            Some(_) => Err("needs the control token as its last argument".into()),
            None if ip.is_loopback() => Ok(()),
            None => Err("refused from another machine: start Stagebox with --control-token and send the token as the last argument".into()),
        }
    }
}

/// Equal strings, compared in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which browsers' pages and which Host names OSCQuery answers.
#[derive(Debug, Clone)]
pub struct Origins {
    /// The address OSC and OSCQuery bind.
    pub bind: IpAddr,
    /// Origins (`http://host:port`) or host names allowed besides loopback and the bind address.
    pub allowed: Vec<String>,
}

impl Origins {
    /// A `Host` header is fine when it names loopback, an IP address (a name is what a
    /// DNS-rebinding page would use), this machine, or an allowed host.
    pub fn host_ok(&self, host: &str) -> bool {
        let name = strip_port(host);
        is_local_name(name) || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() || self.listed(name) || name == machine_name()
    }

    /// An `Origin` header (sent by browsers) is fine when its host is loopback, the bind address,
    /// or allowed. No Origin (TouchDesigner, Max, curl) is fine.
    pub fn origin_ok(&self, origin: Option<&str>) -> bool {
        let Some(o) = origin else { return true };
        if self.allowed.iter().any(|a| a == o) {
            return true;
        }
        let Some(rest) = o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")) else {
            return false; // `null`, file://, extensions
        };
        let name = strip_port(rest.trim_end_matches('/'));
        let ip = name.trim_matches(['[', ']']).parse::<IpAddr>().ok();
        is_local_name(name) || ip.is_some_and(|ip| ip.is_loopback() || (ip == self.bind && !ip.is_unspecified())) || self.listed(name)
    }

    fn listed(&self, name: &str) -> bool {
        self.allowed.iter().any(|a| {
            let a = a.strip_prefix("http://").or_else(|| a.strip_prefix("https://")).unwrap_or(a);
            strip_port(a.trim_end_matches('/')) == name
        })
    }
}

fn is_local_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost") || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host:port`, `[v6]:port`, `host` -> the host.
fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_once(']').map_or(h, |(a, _)| &h[..a.len() + 1]);
    }
    match h.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => a,
        _ => h,
    }
}

/// This machine's host name (and `NAME.local`, as mDNS names it), lower case.
fn machine_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_outside_the_patch_folders_are_refused_alike_whether_or_not_they_exist() {
        let dir = std::env::temp_dir().join(format!("sb-access-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("set")).unwrap();
        std::fs::write(dir.join("set/a.toml"), "[[node]]\nid = \"o\"\ntype = \"output\"\n").unwrap();
        std::fs::write(dir.join("outside.toml"), "x").unwrap();
        let running = dir.join("set/a.toml");
        let dirs = PatchDirs::default();
        assert_eq!(
            dirs.resolve(&running, "a.toml").unwrap(),
            dir.join("set/a.toml").canonicalize().unwrap()
        );
        let e1 = dirs.resolve(&running, "../outside.toml").unwrap_err();
        let e2 = dirs.resolve(&running, "../nothing.toml").unwrap_err();
        assert!(
            e1.contains("is not in a patch folder") && e2.contains("is not in a patch folder"),
            "{e1} / {e2}"
        );
        assert!(dirs
            .resolve(&running, "/etc/passwd")
            .unwrap_err()
            .contains("`/etc/passwd` is not in a patch folder"));
        std::os::unix::fs::symlink("/etc/hostname", dir.join("set/link.toml")).unwrap();
        assert!(dirs
            .resolve(&running, "link.toml")
            .unwrap_err()
            .contains("is not in a patch folder"));
        let wider = PatchDirs { extra: vec![dir.clone()] };
        assert!(wider.resolve(&running, "../outside.toml").is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_token_guards_commands_and_without_one_only_loopback_may() {
        let lan: IpAddr = "192.168.1.9".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let open = Guard { token: None };
        assert!(open.allows(lo, None).is_ok());
        assert!(open.allows(lan, None).is_err());
        let locked = Guard {
            token: Some("s3cret".into()),
        };
        assert!(locked.allows(lo, None).is_err());
        assert!(locked.allows(lan, Some("s3cret")).is_ok());
        assert!(locked.allows(lan, Some("s3cre")).is_err());
    }

    #[test]
    fn origins_and_hosts() {
        let o = Origins {
            bind: "127.0.0.1".parse().unwrap(),
            allowed: vec!["http://td.local:9980".into()],
        };
        assert!(o.origin_ok(None));
        assert!(o.origin_ok(Some("http://localhost:8080")));
        assert!(o.origin_ok(Some("http://127.0.0.1:5173")));
        assert!(o.origin_ok(Some("http://[::1]:3000")));
        assert!(o.origin_ok(Some("http://td.local:9980")));
        assert!(!o.origin_ok(Some("https://evil.example")));
        assert!(!o.origin_ok(Some("null")));
        assert!(o.host_ok("127.0.0.1:57131") && o.host_ok("localhost:57131") && o.host_ok("[::1]:57131"));
        assert!(o.host_ok("192.168.1.4:57131"));
        assert!(!o.host_ok("evil.example:57131"));
    }
}
