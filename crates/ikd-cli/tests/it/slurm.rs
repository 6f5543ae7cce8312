//! `ikd slurm` against a real SLURM: a one-node cluster (munged, slurmctld, slurmd from Debian's
//! `munge` and `slurm-wlm`, which `cargo xtask test` installs when run as root) started for the
//! test with its own key, ports and state folders, stopped at the end even when the test fails.
//! Two small synthetic categories — one new, one interrupted after its first step — go through
//! the generated job array and report job; then a resubmission after one run lost its test reruns
//! that category only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ikd_data::synthetic::{generate, SyntheticConfig, Texture};

use super::ikd_ok;

/// How long the jobs of one submission may take before the test gives up.
const JOBS_TIMEOUT: Duration = Duration::from_secs(600);

/// A program from PATH or the system folders (`/usr/sbin` holds the daemons).
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found: this test runs a one-node SLURM cluster and needs Debian's \
                 slurm-wlm and munge (`sudo apt-get install slurm-wlm munge`), which \
                 `cargo xtask test` installs when run as root"
            )
        })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Two distinct free ports (both held while they are chosen).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// A running one-node cluster; dropping it cancels its jobs and stops its daemons.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        assert!(
            is_root(),
            "the SLURM test starts slurmd, which runs jobs as their user: run it as root (CI does)"
        );
        let (munged, slurmctld, slurmd) =
            (program("munged"), program("slurmctld"), program("slurmd"));
        for p in ["sbatch", "squeue", "scontrol", "scancel"] {
            program(p);
        }
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let mut cluster =
            Cluster { conf: dir.join("slurm.conf"), dir: dir.clone(), daemons: Vec::new() };

        // munge with its own key and socket
        let key = dir.join("munge.key");
        let bytes: Vec<u8> =
            (0..1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&key, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let socket = dir.join("munge.sock");
        let child = Command::new(&munged)
            .args(["--foreground", "--force"])
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--log-file={}", dir.join("munged.log").display()))
            .arg(format!("--pid-file={}", dir.join("munged.pid").display()))
            .arg(format!("--seed-file={}", dir.join("munged.seed").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        cluster.daemons.push(("munged", child));
        cluster.wait_for(|| socket.exists(), "munged's socket");

        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let host = host.trim().split('.').next().unwrap().to_string();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (ctld_port, slurmd_port) = free_ports();
        for d in ["state", "spool"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let p = |name: &str| dir.join(name).display().to_string();
        let conf = format!(
            "ClusterName=ikdtest\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmUser=root\nSlurmdUser=root\n\
             SlurmctldPort={ctld}\nSlurmdPort={slurmd}\n\
             AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={sock}\n\
             StateSaveLocation={state}\nSlurmdSpoolDir={spool}\n\
             SlurmctldPidFile={cpid}\nSlurmdPidFile={dpid}\n\
             SlurmctldLogFile={clog}\nSlurmdLogFile={dlog}\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SchedulerType=sched/builtin\nSelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n\
             ReturnToService=2\nMpiDefault=none\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
             PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            ctld = ctld_port,
            slurmd = slurmd_port,
            sock = socket.display(),
            state = p("state"),
            spool = p("spool"),
            cpid = p("slurmctld.pid"),
            dpid = p("slurmd.pid"),
            clog = p("slurmctld.log"),
            dlog = p("slurmd.log"),
        );
        std::fs::write(&cluster.conf, conf).unwrap();
        for (name, bin) in [("slurmctld", &slurmctld), ("slurmd", &slurmd)] {
            let child = Command::new(bin)
                .args(["-D", "-f"])
                .arg(&cluster.conf)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("{name}.stderr"))).unwrap())
                .spawn()
                .unwrap();
            cluster.daemons.push((name, child));
            if name == "slurmctld" {
                cluster.wait_for(
                    || cluster.slurm("scontrol", &["ping"]).status.success(),
                    "slurmctld to answer",
                );
            }
        }
        cluster.wait_for(
            || {
                let out = cluster.slurm("sinfo", &["-h", "-o", "%T"]);
                String::from_utf8_lossy(&out.stdout).trim() == "idle"
            },
            "the node to be idle",
        );
        cluster
    }

    /// Runs a SLURM client with this cluster's configuration.
    fn slurm(&self, client: &str, args: &[&str]) -> Output {
        Command::new(program(client)).args(args).env("SLURM_CONF", &self.conf).output().unwrap()
    }

    fn wait_for(&self, mut ready: impl FnMut() -> bool, what: &str) {
        let start = Instant::now();
        while !ready() {
            if start.elapsed() > Duration::from_secs(60) {
                panic!("waited 60 s for {what}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The daemons' logs, for a failure's message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for f in ["munged.log", "slurmctld.log", "slurmctld.stderr", "slurmd.log", "slurmd.stderr"]
        {
            let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {f}\n"));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until none of `jobs` is queued or running; panics with the logs when a job's
    /// dependency can never be met or the time is up.
    fn wait_jobs(&self, jobs: &[String], job_logs: &Path) {
        let start = Instant::now();
        loop {
            let out = self.slurm("squeue", &["-h", "-o", "%i %T %r", "-j", &jobs.join(",")]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && text.trim().is_empty() {
                return;
            }
            if text.contains("DependencyNeverSatisfied") || start.elapsed() > JOBS_TIMEOUT {
                panic!(
                    "jobs {jobs:?} did not finish ({:.0} s):\n{text}\n{}\n{}",
                    start.elapsed().as_secs_f64(),
                    job_logs_text(job_logs),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.slurm("scancel", &["--quiet", "--partition=test"]);
        let _ = self.slurm("scontrol", &["shutdown"]);
        let exited = |c: &mut Child| !matches!(c.try_wait(), Ok(None));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && !self.daemons.iter_mut().filter(|(n, _)| *n != "munged").all(|(_, c)| exited(c))
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            if !exited(child) {
                // SIGTERM first (munged removes its socket), SIGKILL when that is not heard
                let _ = Command::new("kill").arg(child.id().to_string()).status();
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline && !exited(child) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn job_logs_text(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push_str(&format!("--- {}\n", e.path().display()));
        out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    out
}

/// The job ids `submit.sh` printed (`train: job array N, …`, `report: job M, …`).
fn submitted(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let rest =
                l.strip_prefix("train: job array ").or_else(|| l.strip_prefix("report: job "))?;
            rest.split(|c: char| !c.is_ascii_digit()).next().map(str::to_string)
        })
        .collect()
}

fn modified(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn submit(cluster: &Cluster, jobs_dir: &Path) -> (String, Vec<String>) {
    let out = Command::new("bash")
        .arg(jobs_dir.join("submit.sh"))
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", format!("/usr/bin:/bin:{}", std::env::var("PATH").unwrap_or_default()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "submit.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = submitted(&stdout);
    (stdout, ids)
}

#[test]
fn job_array_trains_tests_and_reports_on_a_one_node_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let data = root.join("data");
    let cfg = SyntheticConfig {
        categories: vec![Texture::Tile, Texture::Grid],
        image_size: 64,
        n_train: 4,
        n_test_good: 2,
        n_test_defect: 4,
        seed: 5,
    };
    generate(&cfg, &data).unwrap();
    let data_s = data.to_str().unwrap();
    let (runs, jobs, report) = (root.join("runs"), root.join("jobs"), root.join("report"));
    let recipe = super::RECIPE;

    // grid: interrupted after its first step (a checkpoint to resume)
    let grid = runs.join("grid");
    let mut args = vec!["train", "--data-root", data_s, "--category", "grid", "--out"];
    args.push(grid.to_str().unwrap());
    args.extend(recipe);
    args.extend(["--max-steps", "1"]);
    ikd_ok(&args);
    let out = ikd_ok(&["status", grid.to_str().unwrap(), runs.join("tile").to_str().unwrap()]);
    assert!(out.starts_with("checkpointed\t") && out.contains("\nempty\t"), "{out}");

    let mut args = vec!["slurm", "--out", jobs.to_str().unwrap(), "--data-root", data_s];
    args.extend(["--category", "tile,grid", "--runs", runs.to_str().unwrap()]);
    args.extend(["--report", report.to_str().unwrap(), "--time", "15", "--cpus-per-task", "1"]);
    args.extend(recipe);
    let out = ikd_ok(&args);
    assert!(out.contains("submit.sh"), "{out}");

    let cluster = Cluster::start(&root.join("cluster"));
    let started = Instant::now();
    let (out, ids) = submit(&cluster, &jobs);
    assert!(out.contains("2 of 2 categories (tasks 0,1)"), "{out}");
    assert_eq!(ids.len(), 2, "{out}");
    cluster.wait_jobs(&ids, &jobs.join("logs"));
    eprintln!("first submission: {:.0} s", started.elapsed().as_secs_f64());
    let logs = job_logs_text(&jobs.join("logs"));
    for c in ["tile", "grid"] {
        let run = ikd::RunDir::new(runs.join(c));
        assert_eq!(run.state(), ikd::RunState::Tested, "{c}:\n{logs}\n{}", cluster.logs());
    }
    assert!(logs.contains("grid: checkpointed run"), "{logs}");
    assert!(logs.contains("tile: empty run"), "{logs}");
    // grid went on from its checkpoint: its log has each step once
    let log = std::fs::read_to_string(grid.join(ikd::files::TRAIN_LOG)).unwrap();
    let steps: Vec<u64> =
        log.lines().map(|l| serde_json::from_str::<ikd::LogEntry>(l).unwrap().step).collect();
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>(), "{log}");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("tile") && html.contains("grid"));

    // tile lost its test: the resubmission runs its task only, and grid is left alone
    let tile = runs.join("tile");
    std::fs::remove_file(tile.join(ikd::files::METRICS)).unwrap();
    let grid_metrics = modified(&grid.join(ikd::files::METRICS));
    let tile_student = modified(&tile.join(ikd::files::STUDENT));
    let (out, ids) = submit(&cluster, &jobs);
    assert!(out.contains("1 of 2 categories (tasks 0)"), "{out}");
    cluster.wait_jobs(&ids, &jobs.join("logs"));
    assert_eq!(ikd::RunDir::new(&tile).state(), ikd::RunState::Tested);
    assert_eq!(modified(&tile.join(ikd::files::STUDENT)), tile_student, "tested, not retrained");
    assert_eq!(modified(&grid.join(ikd::files::METRICS)), grid_metrics, "grid not rerun");

    // everything finished: only the report is submitted
    let (out, ids) = submit(&cluster, &jobs);
    assert!(out.contains("every category is finished"), "{out}");
    cluster.wait_jobs(&ids, &jobs.join("logs"));
    eprintln!("three submissions: {:.0} s", started.elapsed().as_secs_f64());
}
