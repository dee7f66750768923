//! Docker in the TD image: the sim image built from the real configuration
//! and lock boots under TCG (`-smp 1`), ee-init starts containerd and
//! dockerd from the image's `/etc/ee/services`, and the example bundle
//! (`scripts/example-bundle`) runs offline: its image is not in the VM
//! until `docker load` reads `images/hello.tar`, whose image id docker
//! reports as the archive's config digest; `docker compose up` starts the
//! service with `pull_policy: never`; the page it serves through QEMU's
//! port forward shows the GREETING value the compose environment passed in.
//!
//! The test adds to the built image only what it needs to drive it, as a
//! second archive appended to the initrd (the kernel unpacks concatenated
//! archives in order, later files replacing earlier ones): busybox for a
//! shell (the sim image has none), a one-shot script, the bundle, and
//! `/etc/ee/services` = the image's own list plus one line starting the
//! script. containerd, dockerd and their configuration are the image's.
//!
//! Slow (2-4 minutes on this 2-core machine: the image build takes 35-55 s,
//! and in the TCG boot dockerd needs 17-31 s and `docker compose up`
//! 10-25 s), and part of every run: it is the one test that starts the
//! image's own dockerd configuration (`no-new-privileges`, overlay2 on
//! tmpfs) for real. The checks above also make sure the GREETING value
//! never reaches the console, and the output lists where docker keeps it
//! (RAM only). Without the kernel cache or QEMU it fails under CI and is
//! recorded as skipped elsewhere (`ee_testkit::unavailable`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ee_image::build::config::Config;
use ee_image::devimage::{EeInitBuild, EeInitVariant};
use ee_image::docker_archive::ManifestEntry;
use ee_image::tree::FileTree;

use ee_image::vm::{
    free_local_port, kernel_cache_dir, GuestKernel, PortForward, RunningVm, VmSpec,
};
use ee_testkit::unavailable;

/// From QEMU start to the test script's end: generous for a loaded
/// 2-core machine (typical times in the module docs).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(900);
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// The example service's port (scripts/example/compose.yaml).
const SERVICE_PORT: u16 = 8000;
/// Where the test's files go in the guest.
const TEST_DIR: &str = "/etc/ee/test";

/// The one-shot service. `@MARKER@` is replaced by a per-run value. It
/// uses busybox's applets from a private directory, so dockerd's own PATH
/// (the image's) is left as it is in production.
const TEST_SCRIPT: &str = r#"
set -u
mkdir -p /tmp/bb && /usr/local/bin/busybox --install -s /tmp/bb
PATH=/tmp/bb:$PATH
say() { echo "docker-test: $*"; }
at() { say "$* at $(cut -d' ' -f1 /proc/uptime)"; }
fail() { say "FAIL: $*"; say finished; exit 1; }
n=0
until timeout 20 docker version >/dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 300 ] || fail "dockerd did not answer"; sleep 1
done
at "dockerd ready"
docker info --format 'storage={{.Driver}} logging={{.LoggingDriver}} cgroup={{.CgroupVersion}}'
cd /etc/ee/test/bundle
docker image inspect easyenclave-example/hello:1 >/dev/null 2>&1 && fail "image present before docker load"
docker load -q -i images/hello.tar || fail "docker load"
say "image id $(docker image inspect --format '{{.Id}}' easyenclave-example/hello:1)"
at "compose up"
GREETING=@MARKER@ docker compose --progress plain -p example up -d 2>&1 || fail "docker compose up"
at "compose up done"
docker compose -p example ps
# Regular files only: grep would block on docker's FIFOs under /run.
say "value found in: $(find /var/lib/docker /run /tmp -type f -exec grep -l @MARKER@ {} + | tr '\n' ' ')"
say finished
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn have(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|st| st.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    stderr.into_owned()
}

/// ee-init built with the sim backend, copied out of the shared target
/// directory (the same build image_build.rs uses).
fn ee_init_sim(into: &Path) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ee-init-boot");
    let built = EeInitBuild {
        cargo: env!("CARGO").into(),
        workspace: workspace(),
        target_dir: target,
        variant: EeInitVariant::Sim,
    }
    .run()
    .unwrap_or_else(|e| panic!("{e}"));
    let copy = into.join("ee-init-sim");
    std::fs::copy(&built, &copy).unwrap();
    copy
}

/// `path` inside the tar `archive`.
fn tar_member(archive: &[u8], path: &str) -> Vec<u8> {
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new(path) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            return data;
        }
    }
    panic!("{path} is not in the archive");
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0): status line and body.
fn http_get(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

#[test]
fn containerd_and_dockerd_run_the_example_bundle_offline() {
    const TEST: &str = "containerd_and_dockerd_run_the_example_bundle_offline";
    let kernel = match GuestKernel::from_cache(&kernel_cache_dir()) {
        Ok(kernel) => kernel,
        Err(e) => {
            unavailable(TEST, &e.to_string());
            return;
        }
    };
    if !have("qemu-system-x86_64") {
        unavailable(
            TEST,
            "qemu-system-x86_64 not installed (scripts/install-deps)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = ee_init_sim(dir.path());

    // The sim image from the real configuration and lock.
    let config_path = workspace().join("image/ee-image.json");
    let out = dir.path().join("out");
    let started = Instant::now();
    run(Command::new(env!("CARGO_BIN_EXE_ee-image")).args([
        "build",
        "--config",
        s(&config_path),
        "--ee-init",
        &format!("sim={}", s(&sim)),
        "--out",
        s(&out),
    ]));
    let build_time = started.elapsed();

    // The example bundle, and what docker must report for its image.
    let bundle = dir.path().join("bundle");
    run(
        Command::new(workspace().join("scripts/example-bundle")).args([
            "--ee-image",
            env!("CARGO_BIN_EXE_ee-image"),
            s(&bundle),
        ]),
    );
    let compose = std::fs::read(bundle.join("compose.yaml")).unwrap();
    let archive = std::fs::read(bundle.join("images/hello.tar")).unwrap();
    let manifest: Vec<ManifestEntry> =
        serde_json::from_slice(&tar_member(&archive, "manifest.json")).unwrap();
    let [entry] = manifest.as_slice() else {
        panic!("one image expected: {manifest:?}");
    };
    assert_eq!(entry.repo_tags, ["easyenclave-example/hello:1"]);
    let image_id = entry.config.replace("blobs/sha256/", "sha256:");
    let [layer_path] = entry.layers.as_slice() else {
        panic!("one layer expected: {entry:?}");
    };
    let layer = tar_member(&archive, layer_path);
    let busybox = tar_member(&layer, "bin/busybox");

    // The test's additions, appended to the image's initrd.
    let config = Config::load(&config_path).unwrap();
    let services = config
        .files
        .get("/etc/ee/services")
        .expect("the configuration lists services");
    assert!(services.contains("\ncontainerd always /usr/bin/containerd\n"));
    assert!(services.contains("\ndockerd always /usr/sbin/dockerd\n"));
    let marker = format!(
        "greeting-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut overlay = FileTree::new();
    overlay
        .add_file(
            "/etc/ee/services",
            0o644,
            format!(
                "{services}docker-test never /usr/local/bin/busybox sh {TEST_DIR}/docker-test.sh\n"
            )
            .into_bytes(),
        )
        .unwrap();
    overlay
        .add_file("/usr/local/bin/busybox", 0o755, busybox)
        .unwrap();
    overlay
        .add_file(
            &format!("{TEST_DIR}/docker-test.sh"),
            0o644,
            TEST_SCRIPT.replace("@MARKER@", &marker).into_bytes(),
        )
        .unwrap();
    overlay
        .add_file(&format!("{TEST_DIR}/bundle/compose.yaml"), 0o644, compose)
        .unwrap();
    overlay
        .add_file(
            &format!("{TEST_DIR}/bundle/images/hello.tar"),
            0o644,
            archive,
        )
        .unwrap();
    let cpio = overlay.write_cpio(Vec::new(), 0).unwrap();
    let mut initrd = std::fs::read(out.join("sim/initrd.img")).unwrap();
    let image_size = initrd.len();
    initrd.extend(ee_image::initramfs::gzip(&cpio).unwrap());
    let initrd_path = dir.path().join("initrd-with-test.img");
    std::fs::write(&initrd_path, &initrd).unwrap();

    // Boot with the service's port forwarded; the agent on another port.
    let launch = dir.path().join("launch.json");
    std::fs::write(
        &launch,
        r#"{"version":1,"repo":"octo/docker-test","endpoint":"docker-test.example.com:443","agent_port":8443,"network":{"mode":"static","address":"10.0.2.15/24","gateway":"10.0.2.2","dns":["10.0.2.3"]}}"#,
    )
    .unwrap();
    let mut spec = VmSpec::new(
        kernel.vmlinux.clone(),
        initrd_path,
        dir.path().join("serial.log"),
    );
    spec.append = std::fs::read_to_string(out.join("sim/cmdline")).unwrap();
    spec.memory_mib = 2048;
    spec.launch_config = Some(launch);
    let host_port = free_local_port().unwrap();
    spec.forwards = vec![PortForward {
        host: host_port,
        guest: SERVICE_PORT,
    }];
    let mut vm = RunningVm::start(&spec).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_serial("docker-test: finished", SCRIPT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let serial = vm.serial().unwrap();
    assert!(!serial.contains("docker-test: FAIL"), "{serial}");
    for name in ["containerd", "dockerd"] {
        assert!(
            serial.contains(&format!("ee-init: started service {name} (pid")),
            "{serial}"
        );
    }
    assert!(
        serial.contains("storage=overlay2 logging=local cgroup=2"),
        "{serial}"
    );
    // docker's image id is the archive's config digest: the image came from
    // the archive (it was absent before `docker load`, and compose may not pull).
    assert!(
        serial.contains(&format!("docker-test: image id {image_id}")),
        "expected image id {image_id}\n{serial}"
    );

    // The service answers through the forwarded port with the greeting.
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let (status, body) = loop {
        match http_get(host_port, "/cgi-bin/hello") {
            Ok(response) if response.0.contains(" 200 ") => break response,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500))
            }
            other => panic!("GET /cgi-bin/hello: {other:?}\n{}", vm.serial().unwrap()),
        }
    };
    let to_http = vm.elapsed();
    assert_eq!(
        body,
        format!("hello from Easy Enclave: {marker}\n"),
        "{status}"
    );
    // Neither service exited along the way (ee-init logs every exit), and
    // the value never reached the console, which the host reads.
    let serial = vm.serial().unwrap();
    assert!(
        !serial.contains(&marker),
        "GREETING on the console:\n{serial}"
    );
    for name in ["containerd", "dockerd"] {
        assert!(
            !serial.contains(&format!("ee-init: service {name} (pid")),
            "{name} exited:\n{serial}"
        );
    }
    drop(vm);
    let stored = serial
        .lines()
        .find_map(|l| l.strip_prefix("docker-test: value found in: "))
        .unwrap_or_default();
    eprintln!("GREETING is stored (in RAM) in: {stored}");
    // Guest uptimes (seconds since the kernel started).
    let services = uptime_ms(&serial, "] ee-init: started service dockerd") / 1000.0;
    let dockerd = script_uptime(&serial, "dockerd ready");
    let compose = script_uptime(&serial, "compose up");
    let compose_done = script_uptime(&serial, "compose up done");
    eprintln!(
        "docker in the sim image: build {build_time:.0?}, initrd {} MB; guest uptime: \
         services started {services:.1} s, dockerd ready {dockerd:.1} s (+{:.1} s), \
         compose up {:.1} s, page through the forward {to_http:.1?} after QEMU start",
        image_size >> 20,
        dockerd - services,
        compose_done - compose,
    );
}

/// The milliseconds in ee-init's `[  29106 ms]` prefix of the line with `text`.
fn uptime_ms(serial: &str, text: &str) -> f64 {
    let line = serial
        .lines()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?}"));
    let inner = line.trim_start_matches('[').split(" ms]").next().unwrap();
    inner.trim().parse().unwrap()
}

/// The uptime the test script printed in `docker-test: {what} at SECONDS`.
fn script_uptime(serial: &str, what: &str) -> f64 {
    let prefix = format!("docker-test: {what} at ");
    let line = serial
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}"));
    line.trim().parse().unwrap()
}
