//! Child processes that cannot outlive their owner.
//!
//! A [`ManagedProcess`] writes stdout and stderr to a log file, is killed and reaped on `Drop`
//! (so also when a test panics), and, unless detached on purpose, receives `SIGKILL` from the
//! kernel if the thread that spawned it dies first (`PR_SET_PDEATHSIG`), so a test process
//! killed from outside leaves no orphans either.

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::Error;

/// Signals tests send to processes they manage.
pub use libc::{SIGCONT, SIGKILL, SIGSTOP, SIGTERM};

/// How a process relates to its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the owner drops it or dies (tests).
    Owned,
    /// In its own process group, meant to outlive the owner (`cargo xtask controlplane up`).
    Detached,
}

/// A running child process with its log file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    recipe: Recipe,
}

/// What it takes to start the same process again ([`ManagedProcess::restart`]).
#[derive(Debug, Clone)]
struct Recipe {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
    lifetime: Lifetime,
}

impl Recipe {
    fn of(cmd: &Command, lifetime: Lifetime) -> Self {
        Self {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(ToOwned::to_owned).collect(),
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
            dir: cmd.get_current_dir().map(ToOwned::to_owned),
            lifetime,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (key, value) in &self.envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

impl ManagedProcess {
    /// Spawns `cmd`, sending its output to `log`.
    ///
    /// Spawn from a thread that lives as long as the process should (an async test's runtime
    /// thread does; a `spawn_blocking` thread does not): `PR_SET_PDEATHSIG` fires when the
    /// spawning *thread* exits.
    pub fn spawn(name: &str, cmd: Command, log: &Path, lifetime: Lifetime) -> Result<Self, Error> {
        let recipe = Recipe::of(&cmd, lifetime);
        let out = File::create(log).map_err(|e| Error::io(log, e))?;
        let child = start(name, cmd, out, lifetime)?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            recipe,
        })
    }

    /// Kills the process (if it runs) and starts the same command again, appending to the
    /// same log: an API server restarted on the same etcd, an etcd on the same data. Spawn
    /// rules as for [`ManagedProcess::spawn`].
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        let out = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .map_err(|e| Error::io(&self.log, e))?;
        let child = start(&self.name, self.recipe.command(), out, self.recipe.lifetime)?;
        self.child = Some(child);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        fs::read_to_string(&self.log)
            .map(|text| tail(&text, lines))
            .unwrap_or_default()
    }

    /// `Err` with the exit status and log tail if the process has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        let status = match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => return Ok(()),
            Some(Ok(Some(status))) => status.to_string(),
            Some(Err(e)) => e.to_string(),
            None => "stopped".to_owned(),
        };
        Err(Error::ProcessExited {
            name: self.name.clone(),
            status,
            log_tail: self.log_tail(40),
        })
    }

    /// Waits until `probe` succeeds (a server accepts connections, say), failing at once if
    /// the process exits first.
    pub async fn wait_serving<F, Fut>(
        &mut self,
        what: &str,
        timeout: Duration,
        probe: F,
    ) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        crate::eventually(what, timeout, Duration::from_millis(50), || {
            let running = self.check_running();
            let probed = probe();
            async move {
                running.map_err(|e| e.to_string())?;
                probed.await
            }
        })
        .await
    }

    /// Sends a signal (e.g. `libc::SIGSTOP`) to the process.
    pub fn signal(&self, signal: i32) -> Result<(), Error> {
        match self.pid() {
            Some(pid) => send_signal(pid, signal),
            None => Ok(()),
        }
    }

    /// `SIGTERM`, then `SIGKILL` after `grace`; reaps the process. Blocks the calling thread
    /// while it waits (short in practice: tests stop processes that exit within milliseconds).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = send_signal(child.id(), libc::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// `SIGKILL` at once; reaps the process.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// Gives up ownership: the process keeps running and this value no longer stops it.
    pub fn detach(mut self) -> Option<u32> {
        self.child.take().map(|child| child.id())
    }
}

/// Starts `cmd` with its output to `out`, killed with its owner unless detached.
fn start(name: &str, mut cmd: Command, out: File, lifetime: Lifetime) -> Result<Child, Error> {
    let err = out.try_clone().map_err(|source| Error::Spawn {
        name: name.to_owned(),
        source,
    })?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    match lifetime {
        Lifetime::Owned => set_parent_death_signal(&mut cmd),
        Lifetime::Detached => {
            cmd.process_group(0);
        }
    }
    cmd.spawn().map_err(|source| Error::Spawn {
        name: name.to_owned(),
        source,
    })
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: i32) -> Result<(), Error> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| Error::Config {
        message: format!("pid {pid} out of range"),
    })?;
    #[allow(unsafe_code)]
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io(
            Path::new("kill(2)"),
            std::io::Error::last_os_error(),
        ))
    }
}

/// `SIGTERM`, then `SIGKILL` if the process is still alive after `grace`. Returns `false` if
/// it had to be killed. For processes this one did not spawn (detached control planes).
pub fn terminate_pid(pid: u32, grace: Duration) -> bool {
    if send_signal(pid, SIGTERM).is_err() {
        return true;
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = send_signal(pid, SIGKILL);
    false
}

/// Whether a process with this pid exists and has not exited. A detached process whose parent
/// died is reparented, and until its new parent reaps it an exited process is a zombie: that
/// counts as not alive.
pub fn pid_alive(pid: u32) -> bool {
    if send_signal(pid, 0).is_err() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs a command to completion; an error carries `name` and what it printed on stderr.
pub fn run(name: &str, cmd: &mut Command) -> Result<(), Error> {
    let output = cmd.output().map_err(|source| Error::Spawn {
        name: name.to_owned(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Config {
        message: format!(
            "{name} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

/// Writes an executable script at `path` that this process, or a process it starts, may run
/// at once.
///
/// A script written here with `fs::write` could not be: a process another test thread forks
/// while the file is open for writing holds that descriptor until it execs, and running the
/// script meanwhile fails with `ETXTBSY` ("Text file busy"). So a short-lived `sh` writes it
/// (the text is its argument): this process never holds the file open.
pub fn write_script(path: &Path, text: &str) -> Result<(), Error> {
    run(
        &format!("writing {}", path.display()),
        Command::new("sh")
            .args(["-c", r#"printf '%s' "$1" > "$0" && chmod 755 "$0""#])
            .arg(path)
            .arg(text),
    )
}

/// A binary of this workspace for a test to run, from the same target directory as the test
/// itself: `cargo test --workspace` has built it already; only a missing one is built here.
/// (Building it again with `-p` would resolve features differently and relink it, slowly,
/// in the middle of the suite.)
pub fn workspace_binary(package: &str, bin: &str) -> Result<std::path::PathBuf, Error> {
    let exe =
        std::env::current_exe().map_err(|e| Error::io(std::path::Path::new("test exe"), e))?;
    // <target>/<profile>/deps/<test> → <target>/<profile>/<bin>
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or_else(|| Error::Config {
            message: format!("{} is not in a cargo target directory", exe.display()),
        })?;
    let path = profile_dir.join(bin);
    if !path.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(
            &format!("cargo build -p {package} --bin {bin}"),
            Command::new(cargo).args(["build", "--quiet", "--locked", "-p", package, "--bin", bin]),
        )?;
    }
    Ok(path)
}
/// The last `n` lines of a text.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
