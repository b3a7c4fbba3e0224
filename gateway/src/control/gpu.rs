//! `GET /v1/management/gpu`: per-GPU memory and utilisation from `nvidia-smi` when the host
//! has one; an empty list with the reason when it has not (the engines then run on CPU).

use std::time::Duration;

use tokio::process::Command;

use super::types::{GpuInfo, GpuReport};

/// The query: one CSV line per GPU.
pub const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=index,name,memory.used,memory.total,utilization.gpu",
    "--format=csv,noheader,nounits",
];

/// Ask `nvidia-smi` (bounded by `timeout`).
pub async fn query(timeout: Duration) -> GpuReport {
    let mut cmd = Command::new("nvidia-smi");
    cmd.args(NVIDIA_SMI_ARGS);
    run(cmd, timeout).await
}

/// Run a `nvidia-smi`-like command and parse its answer.
pub async fn run(mut cmd: Command, timeout: Duration) -> GpuReport {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let empty = |reason: String| GpuReport {
        gpus: Vec::new(),
        reason: Some(reason),
    };
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => return empty(format!("nvidia-smi did not answer within {timeout:?}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return empty("nvidia-smi not found: no NVIDIA driver on this host".into())
        }
        Ok(Err(e)) => return empty(format!("cannot run nvidia-smi: {e}")),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why
            .lines()
            .chain(String::from_utf8_lossy(&out.stdout).lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim()
            .chars()
            .take(300)
            .collect::<String>();
        return empty(format!("nvidia-smi failed ({}): {why}", out.status));
    }
    match parse(&String::from_utf8_lossy(&out.stdout)) {
        Ok(gpus) if gpus.is_empty() => empty("nvidia-smi lists no GPU".into()),
        Ok(gpus) => GpuReport { gpus, reason: None },
        Err(e) => empty(format!("cannot parse nvidia-smi output: {e}")),
    }
}

/// Parse `index, name, memory.used, memory.total, utilization.gpu` lines (MiB, percent).
/// `[N/A]` / `[Not Supported]` values become `None`.
pub fn parse(text: &str) -> Result<Vec<GpuInfo>, String> {
    let mut gpus = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        // A GPU name never contains a comma in practice; tolerate one by joining the middle.
        if fields.len() < 5 {
            return Err(format!("expected 5 fields, got `{line}`"));
        }
        let n = fields.len();
        let index = fields[0]
            .parse()
            .map_err(|_| format!("bad GPU index in `{line}`"))?;
        gpus.push(GpuInfo {
            index,
            name: fields[1..n - 3].join(","),
            memory_used_mib: number(fields[n - 3]),
            memory_total_mib: number(fields[n - 2]),
            utilization_percent: number(fields[n - 1]),
        });
    }
    Ok(gpus)
}

fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_GPUS: &str = "0, NVIDIA H100 80GB HBM3, 1234, 81559, 17\n\
                            1, NVIDIA H100 80GB HBM3, 0, 81559, 0\n";

    #[test]
    fn parses_nvidia_smi_csv() {
        let gpus = parse(TWO_GPUS).unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(
            gpus[0],
            GpuInfo {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_used_mib: Some(1234),
                memory_total_mib: Some(81559),
                utilization_percent: Some(17.0),
            }
        );
        assert_eq!(gpus[1].index, 1);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn not_available_values_are_null() {
        let gpus = parse("0, NVIDIA GeForce GTX 1080, [N/A], 8192, [Not Supported]").unwrap();
        assert_eq!(gpus[0].memory_used_mib, None);
        assert_eq!(gpus[0].memory_total_mib, Some(8192));
        assert_eq!(gpus[0].utilization_percent, None);
        assert!(parse("0, only, three").is_err());
        assert!(parse("x, name, 1, 2, 3").is_err());
    }

    #[tokio::test]
    async fn runs_the_command_and_reports_failures() {
        let sh = |script: &str| {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", script]);
            c
        };
        let t = Duration::from_secs(10);
        let r = run(
            sh(&format!("printf '{}'", TWO_GPUS.replace('\n', "\\n"))),
            t,
        )
        .await;
        assert_eq!(r.reason, None);
        assert_eq!(r.gpus.len(), 2);
        let r = run(sh("echo 'NVIDIA-SMI has failed' >&2; exit 9"), t).await;
        assert!(r.gpus.is_empty());
        assert!(r.reason.unwrap().contains("NVIDIA-SMI has failed"));
        let r = run(Command::new("/nonexistent/nvidia-smi"), t).await;
        assert!(r.reason.unwrap().contains("not found"));
        let r = run(sh("exec sleep 10"), Duration::from_millis(50)).await;
        assert!(r.reason.unwrap().contains("did not answer"));
    }
}
