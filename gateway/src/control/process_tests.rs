//! Unit tests of `control/process.rs`.

use super::*;

#[test]
fn command_line() {
    let spec = LaunchSpec {
        model: "/m/SmolLM2.Q4_1.gguf".into(),
        port: 0,
        max_seqs: 4,
        threads: None,
        served_model_name: None,
    };
    let args: Vec<String> = spec
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        args,
        [
            "--model",
            "/m/SmolLM2.Q4_1.gguf",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--max-seqs",
            "4",
            "--log-format",
            "human"
        ]
    );
    assert_eq!(spec.model_name(), "SmolLM2.Q4_1");
    let spec = LaunchSpec {
        threads: Some(2),
        served_model_name: Some("smol".into()),
        port: 8005,
        ..spec
    };
    let args: Vec<String> = spec
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(args.ends_with(&[
        "--threads".to_string(),
        "2".into(),
        "--served-model-name".into(),
        "smol".into()
    ]));
    assert!(args.windows(2).any(|w| w == ["--port", "8005"]));
    assert_eq!(spec.model_name(), "smol");
}

#[test]
fn reads_the_announced_port() {
    assert_eq!(
        announced_port("sagellm-engine listening on http://127.0.0.1:43121\n"),
        Some(43121)
    );
    assert_eq!(
        announced_port("sagellm-engine listening on http://[::1]:8001"),
        Some(8001)
    );
    assert_eq!(announced_port("INFO loading model"), None);
    assert_eq!(
        announced_port("sagellm-engine listening on http://127.0.0.1:0"),
        None
    );
}

#[test]
fn tail_keeps_the_last_lines_without_colours() {
    let t = OutputTail::default();
    for i in 0..(OutputTail::LINES + 5) {
        t.push(&format!("\x1b[32mINFO\x1b[0m line {i}\n"));
    }
    t.push("   \n");
    let lines = t.lines();
    assert_eq!(lines.len(), OutputTail::LINES);
    assert_eq!(lines[0], "INFO line 5");
    assert_eq!(
        t.last().unwrap(),
        format!("INFO line {}", OutputTail::LINES + 4)
    );
    t.push(&"é".repeat(400));
    assert!(t.last().unwrap().ends_with('…'));
}

#[test]
fn exit_descriptions() {
    let e = exit_info(&ExitStatus::from_raw(2 << 8));
    assert_eq!((e.code, e.signal), (Some(2), None));
    assert_eq!(e.description, "exit code 2");
    let e = exit_info(&ExitStatus::from_raw(9));
    assert_eq!((e.code, e.signal), (None, Some(9)));
    assert_eq!(e.description, "killed by signal 9 (SIGKILL)");
}

#[test]
fn a_configured_binary_must_exist() {
    assert!(find_engine_binary("/nonexistent/sagellm-engine")
        .unwrap_err()
        .contains("control.engine_binary"));
    // `sh` stands in for an executable file.
    let sh = find_engine_binary("/bin/sh").unwrap();
    assert_eq!(sh, PathBuf::from("/bin/sh"));
}

#[tokio::test]
async fn spawn_reads_the_port_and_terminate_stops() {
    // A stand-in engine: announces a port like the real one, then waits for SIGTERM.
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "echo 'sagellm-engine listening on http://127.0.0.1:4321'; echo oops >&2; exec sleep 30",
    ]);
    let tail = Arc::new(OutputTail::default());
    let mut s = spawn_command(cmd, "engine-test", tail.clone()).unwrap();
    assert!(s.pid > 0);
    assert_eq!(s.port.await.unwrap(), 4321);
    let status = terminate(&mut s.child, s.pid, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(exit_info(&status).signal, Some(15));
    for r in s.readers {
        r.await.unwrap();
    }
    let lines = tail.lines();
    assert!(lines.contains(&"oops".to_string()), "{lines:?}");
}

#[tokio::test]
async fn sigkill_after_the_grace_period() {
    // Ignores SIGTERM: only SIGKILL ends it.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]);
    let tail = Arc::new(OutputTail::default());
    let mut s = spawn_command(cmd, "engine-test", tail.clone()).unwrap();
    // Wait until the trap is set (the line is printed after it).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tail.last().as_deref() != Some("ready") {
        assert!(
            std::time::Instant::now() < deadline,
            "the script did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = terminate(&mut s.child, s.pid, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(exit_info(&status).signal, Some(9));
}
