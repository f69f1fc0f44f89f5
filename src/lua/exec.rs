//! Running an operator's command off the event loop (the `exec` DNS provider): the command
//! runs under `/bin/sh -c '"$@" 2>&1; printf ...'` on a thread of its own; Lua polls the job
//! between `ngx.sleep`s.
//!
//! Lua API (on the `resty.acme.core` table):
//!
//! - `core.exec_async(argv, timeout_ms)` -> job or `nil, err`; `job:poll()` is `false` while it
//!   runs, then `{ code = <exit status or nil>, timed_out = bool, output = <stdout and stderr,
//!   at most 64 KiB> }` (or `nil, err`) once.
//!
//! The exit status travels as the last line of the output: nginx's SIGCHLD handler reaps every
//! child of a worker (`waitpid(-1)`), so `wait` may find none. On timeout the command's whole
//! process group is killed.
use super::crypto::{JobOutput, ThreadJob};
use mlua::prelude::*;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MARKER: &str = "@@resty-acme-exec-status=";
const MAX_OUTPUT: usize = 64 * 1024;

pub struct ExecOutput {
    code: Option<i32>,
    timed_out: bool,
    output: Vec<u8>,
}

impl JobOutput for ExecOutput {
    const WHAT: &'static str = "command";
    fn into_lua_value(self, lua: &Lua) -> LuaResult<LuaValue> {
        let t = lua.create_table()?;
        t.set("code", self.code)?;
        t.set("timed_out", self.timed_out)?;
        t.set("output", lua.create_string(&self.output)?)?;
        Ok(LuaValue::Table(t))
    }
}

/// Splits the status line off the output: (output, exit status).
fn split_status(mut out: Vec<u8>) -> (Vec<u8>, Option<i32>) {
    let text = String::from_utf8_lossy(&out);
    let Some(pos) = text.rfind(MARKER) else {
        return (out, None);
    };
    let code = text[pos + MARKER.len()..].trim().parse::<i32>().ok();
    // the newline printf put in front of the marker
    let cut = if pos > 0 && out.get(pos - 1) == Some(&b'\n') {
        pos - 1
    } else {
        pos
    };
    out.truncate(cut);
    (out, code)
}

fn run(argv: Vec<String>, timeout: Duration) -> Result<ExecOutput, String> {
    let script = format!("\"$@\" 2>&1; printf '\\n{MARKER}%d\\n' $?");
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("resty-acme-exec")
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let pgid = child.id() as i32;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| "no pipe from the command".to_string())?;
    let reader = std::thread::Builder::new()
        .name("acme-exec-read".into())
        .spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = MAX_OUTPUT.saturating_sub(out.len());
                        out.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            out
        })
        .map_err(|e| format!("cannot start the output reader: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    while !reader.is_finished() {
        if Instant::now() >= deadline {
            timed_out = true;
            // SAFETY: kill(2) with a negative pid signals the process group the command was
            // put in (process_group(0) above); no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reap it unless nginx did; the result does not matter.
    let _ = child.wait();
    let out = if timed_out {
        // Killed: the pipe closes unless something left the group holds it.
        let until = Instant::now() + Duration::from_secs(1);
        while !reader.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            reader.join().unwrap_or_default()
        } else {
            Vec::new()
        }
    } else {
        reader.join().unwrap_or_default()
    };
    let (output, code) = split_status(out);
    Ok(ExecOutput {
        code: if timed_out { None } else { code },
        timed_out,
        output,
    })
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "exec_async",
        lua.create_function(
            |_,
             (argv, timeout_ms): (LuaTable, Option<u64>)|
             -> LuaResult<Result<ThreadJob<ExecOutput>, String>> {
                let argv: Vec<String> =
                    argv.sequence_values::<String>().collect::<LuaResult<_>>()?;
                if argv.is_empty() || argv[0].is_empty() {
                    return Ok(Err("no command given".into()));
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Ok(Err("an argument contains a NUL byte".into()));
                }
                let timeout = Duration::from_millis(timeout_ms.unwrap_or(30_000).max(1));
                Ok(ThreadJob::spawn_plain("acme-exec", move || {
                    run(argv, timeout)
                }))
            },
        )?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> ExecOutput {
        run(
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            Duration::from_millis(timeout_ms),
        )
        .unwrap()
    }

    #[test]
    fn status_and_output() {
        let r = sh("echo out; echo err >&2; exit 3", 5000);
        assert_eq!(r.code, Some(3));
        assert!(!r.timed_out);
        assert_eq!(String::from_utf8_lossy(&r.output), "out\nerr\n");
        let r = sh("printf x", 5000);
        assert_eq!(r.code, Some(0));
        assert_eq!(r.output, b"x");
        let r = run(vec!["/nonexistent/hook".into()], Duration::from_secs(5)).unwrap();
        assert_eq!(r.code, Some(127));
        assert!(String::from_utf8_lossy(&r.output).contains("not found"));
    }

    #[test]
    fn timeout_kills_the_group() {
        let t = Instant::now();
        let r = sh("echo started; sleep 30 & sleep 30", 300);
        assert!(r.timed_out);
        assert_eq!(r.code, None);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(String::from_utf8_lossy(&r.output).contains("started"));
    }

    #[test]
    fn status_line_is_split() {
        let (o, c) = split_status(format!("a\nb\n\n{MARKER}7\n").into_bytes());
        assert_eq!((o.as_slice(), c), (&b"a\nb\n"[..], Some(7)));
        let (o, c) = split_status(b"no marker".to_vec());
        assert_eq!((o.as_slice(), c), (&b"no marker"[..], None));
    }
}
