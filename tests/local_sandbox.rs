//! The local provider for real: bubblewrap namespaces, cgroup limits where the machine has them,
//! the watchdog timeout, and kill from a second provider (as `sandboxes stop` does from another
//! process); then what the host never trusts (links, output, archives, command lines), what a
//! sandbox sees and who it runs as (its own user, the parts of /etc it needs, none of
//! CodeCourier's files), its own network with forwards, and its bounds on processes and disk.
//! Run as root (as in CI) they also show the sandbox's user of its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use codecourier::catalog::{build_custom_tag, Resources};
use codecourier::sandbox::local::LocalProvider;
use codecourier::sandbox::{
    run_captured, run_captured_within, Exec, Mount, SandboxError, SandboxHandle, SandboxProvider,
    SandboxSpec, CAPTURE_LIMIT,
};
use codecourier::secret::Secret;

fn spec(memory_mb: u32) -> SandboxSpec {
    SandboxSpec {
        template: build_custom_tag("base").unwrap(),
        resources: Resources {
            memory_mb,
            cpus: 1,
            timeout_ms: 60_000,
        },
        env: vec![("PROJECT_VAR".into(), Secret::new("from-spec"))],
        metadata: BTreeMap::from([("sandbox_id".into(), "test".into())]),
        mounts: Vec::new(),
        host_tools: Vec::new(),
        network: None,
    }
}

fn sh(script: &str) -> Exec {
    Exec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// Processes anywhere on this machine that carry the sandbox's marker in their environment.
fn processes_of(sandbox: &SandboxHandle) -> Vec<String> {
    let marker = format!("CODECOURIER_SANDBOX_ID={}", sandbox.provider_id);
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn commands_run_isolated_with_their_own_home_and_tmp() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();

    let out = run_captured(
        &provider,
        &sb,
        &sh("echo $HOME $PROJECT_VAR $EXTRA; hostname; ls /proc | grep -c '^[0-9]'; touch /usr/x 2>/dev/null || echo usr-ro; echo hi > ~/f && cat ~/f; ls /root 2>/dev/null | head -1; exit 3"),
    )
    .await
    .unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(out.status.code, Some(3), "{out:?}");
    assert_eq!(lines[0], "/home/user from-spec");
    assert_eq!(lines[1], "codecourier");
    let visible_processes: usize = lines[2].parse().unwrap();
    assert!(
        visible_processes <= 5,
        "pid namespace shows {visible_processes} processes"
    );
    assert_eq!(lines[3], "usr-ro");
    assert_eq!(lines[4], "hi");
    assert_eq!(lines.len(), 5, "the host's /root is not visible: {lines:?}");
    assert!(data
        .path()
        .join("sandboxes")
        .join(&sb.provider_id)
        .join("home/f")
        .exists());

    // stdin is delivered and closed; per-command env does not leak into the next command.
    let exec = Exec {
        stdin: Some(b"-prompt on stdin".to_vec()),
        env: vec![("EXTRA".into(), Secret::new("once"))],
        ..sh("cat; echo; echo $EXTRA")
    };
    let out = run_captured(&provider, &sb, &exec).await.unwrap();
    assert_eq!(out.stdout, "-prompt on stdin\nonce\n");
    let out = run_captured(&provider, &sb, &sh("echo \"[$EXTRA]\""))
        .await
        .unwrap();
    assert_eq!(out.stdout, "[]\n");

    provider
        .write_file(&sb, "/home/user/.config/x.json", b"{}", 0o600)
        .await
        .unwrap();
    let out = run_captured(&provider, &sb, &sh("stat -c %a ~/.config/x.json"))
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "600");
    assert!(provider
        .write_file(&sb, "/etc/passwd", b"x", 0o644)
        .await
        .is_err());
    assert!(provider
        .write_file(&sb, "/home/user/../../etc/x", b"x", 0o644)
        .await
        .is_err());
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn the_timeout_kills_the_whole_process_tree() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(&spec(512), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        sb.limits_report.contains("timeout 2s enforced"),
        "{}",
        sb.limits_report
    );
    let started = Instant::now();
    let result = run_captured(
        &provider,
        &sb,
        &sh("sleep 300 & sleep 301 & (sleep 302 &) ; wait"),
    )
    .await;
    assert!(matches!(result, Err(SandboxError::Expired)), "{result:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        processes_of(&sb).is_empty(),
        "left behind: {:?}",
        processes_of(&sb)
    );
    assert!(matches!(
        run_captured(&provider, &sb, &sh("true")).await,
        Err(SandboxError::Expired)
    ));
}

#[tokio::test]
async fn set_timeout_extends_the_life() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(&spec(512), Duration::from_secs(1))
        .await
        .unwrap();
    provider
        .set_timeout(&sb, Duration::from_secs(30))
        .await
        .unwrap();
    let out = run_captured(&provider, &sb, &sh("sleep 2; echo survived"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "survived\n");
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn another_process_can_stop_a_sandbox_and_list_finds_it() {
    let data = tempfile::tempdir().unwrap();
    let owner = LocalProvider::new(data.path(), None);
    let sb = owner
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();
    let stopper = LocalProvider::new(data.path(), None);
    let listed = stopper
        .list(&BTreeMap::from([(
            "sandbox_id".to_string(),
            "test".to_string(),
        )]))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].alive);

    let running = tokio::spawn({
        let sb = sb.clone();
        async move { run_captured(&owner, &sb, &sh("echo started; sleep 300")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stopper.kill(&sb.provider_id).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(result, Err(SandboxError::Killed)), "{result:?}");
    assert!(processes_of(&sb).is_empty());
    assert!(!stopper.list(&BTreeMap::new()).await.unwrap()[0].alive);
}

#[tokio::test]
async fn memory_limit_is_enforced_or_reported_as_not_enforced() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(&spec(256), Duration::from_secs(60))
        .await
        .unwrap();
    let out = run_captured(
        &provider,
        &sb,
        &sh("python3 -c 'x = bytearray(600 * 1024 * 1024); print(len(x))'"),
    )
    .await
    .unwrap();
    if sb.limits_report.contains("memory 256 MB enforced") {
        assert!(
            !out.status.success(),
            "allocation past the limit survived: {out:?}"
        );
        assert!(out.status.oom_killed, "{out:?}");
    } else {
        assert!(
            sb.limits_report.contains("memory 256 MB NOT enforced"),
            "{}",
            sb.limits_report
        );
        assert!(out.status.success());
    }
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn tools_dir_comes_first_on_path_and_missing_tools_are_left_to_tool_setup() {
    let data = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let script = tools.path().join("fake-agent");
    std::fs::write(&script, "#!/bin/sh\necho fake agent ran\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let provider = LocalProvider::new(data.path(), Some(tools.path().to_path_buf()));
    let sb = provider
        .create(
            &SandboxSpec {
                host_tools: vec!["fake-agent".into(), "git".into()],
                network: None,
                ..spec(512)
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let out = run_captured(
        &provider,
        &sb,
        &sh("fake-agent; git --version | cut -c1-11"),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, "fake agent ran\ngit version\n");
    provider.kill(&sb.provider_id).await.unwrap();

    // A tool found nowhere is not the provider's error: the tool-setup phase reports it.
    let sb = provider
        .create(
            &SandboxSpec {
                host_tools: vec!["no-such-agent-cli".into()],
                network: None,
                ..spec(512)
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let out = run_captured(
        &provider,
        &sb,
        &sh("command -v no-such-agent-cli || echo missing"),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, "missing\n");
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn files_are_never_written_through_links_the_agent_left() {
    let data = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let host_file = host.path().join("authorized_keys");
    std::fs::write(&host_file, "host's own\n").unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();
    // What a restored archive of an earlier agent's ~/.claude may hold.
    let plant = format!(
        "ln -s {dir} ~/.claude && ln -s {file} ~/x.md && mkdir -p /tmp/d && ln -s {dir} /tmp/d/up",
        dir = host.path().display(),
        file = host_file.display()
    );
    let out = run_captured(&provider, &sb, &sh(&plant)).await.unwrap();
    assert!(out.status.success(), "{out:?}");

    for (path, link) in [
        ("/home/user/.claude/CLAUDE.md", "/home/user/.claude"),
        ("/home/user/x.md", "/home/user/x.md"),
        ("/tmp/d/up/skills/x/SKILL.md", "/tmp/d/up"),
    ] {
        let err = provider
            .write_file(&sb, path, b"planted", 0o644)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("cannot write {path}: {link} is a link, and CodeCourier never writes through a link in a sandbox")
        );
    }
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host's own\n");
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 1);
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn output_read_back_from_a_sandbox_is_bounded() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();

    // A little past the limit: kept up to it, the rest counted, the command's own status kept.
    let out = run_captured(
        &provider,
        &sb,
        &sh("head -c 3000000 /dev/zero | tr '\\0' a; echo done >&2"),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(out.cut, 3_000_000 - CAPTURE_LIMIT as u64);
    assert!(out.stdout.starts_with(&"a".repeat(CAPTURE_LIMIT)));
    assert!(
        out.stdout.ends_with(&format!(
            "\n[output cut: the first {CAPTURE_LIMIT} bytes kept, {} more dropped]\n",
            out.cut
        )),
        "{}",
        &out.stdout[CAPTURE_LIMIT..]
    );
    assert_eq!(out.stderr, "done\n");

    // A learnings file linked to /dev/zero: the read ends, and only the limit is kept.
    let started = Instant::now();
    let exec = Exec {
        cwd: Some("/home/user".into()),
        ..sh("ln -s /dev/zero learnings.md && cat learnings.md")
    };
    let out = run_captured_within(&provider, &sb, &exec, 64 * 1024)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!out.status.success(), "{:?}", out.status);
    assert!(out.was_cut());
    assert!(out.stdout.len() < 64 * 1024 + 200, "{}", out.stdout.len());
    assert!(
        out.stdout
            .ends_with("more dropped; the command was stopped for printing too much]\n"),
        "{}",
        &out.stdout[64 * 1024..]
    );
    assert!(
        processes_of(&sb).is_empty(),
        "left behind: {:?}",
        processes_of(&sb)
    );
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn an_archive_from_an_earlier_sandbox_comes_back_without_links_out() {
    use base64::Engine;
    use codecourier::sandbox::archive::restore_tar_gz;
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let earlier = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();
    // The earlier agent leaves links in its ~/.claude; the launcher archives it as it is.
    let script = "mkdir -p ~/.claude/projects && echo notes > ~/.claude/CLAUDE.md \
        && echo '{}' > ~/.claude/projects/a.jsonl && ln -s projects/a.jsonl ~/.claude/latest \
        && ln -s /etc ~/.claude/abs && ln -s ../.bashrc ~/.claude/up && mkfifo ~/.claude/fifo \
        && tar -C /home/user -czf - .claude | base64 -w0";
    let out = run_captured(&provider, &earlier, &sh(script))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let archive = base64::engine::general_purpose::STANDARD
        .decode(out.stdout.trim())
        .unwrap();
    provider.kill(&earlier.provider_id).await.unwrap();

    let follow_up = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();
    let mut dropped = restore_tar_gz(&provider, &follow_up, "/home/user", &archive)
        .await
        .unwrap();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            ".claude/abs: a link to /etc, which is not further down",
            ".claude/fifo: not a file, directory or link (Fifo)",
            ".claude/up: a link to ../.bashrc, which is not further down",
        ]
    );
    let out = run_captured(
        &provider,
        &follow_up,
        &sh("cd ~ && find .claude | sort && cat .claude/latest && ls /tmp"),
    )
    .await
    .unwrap();
    assert_eq!(
        out.stdout,
        ".claude\n.claude/CLAUDE.md\n.claude/latest\n.claude/projects\n.claude/projects/a.jsonl\n{}\n"
    );
    provider
        .write_file(&follow_up, "/home/user/.claude/CLAUDE.md", b"new", 0o644)
        .await
        .unwrap();
    provider.kill(&follow_up.provider_id).await.unwrap();
}

/// Waits until `probe` holds, failing with what it last saw.
async fn wait_until<T: std::fmt::Debug>(what: &str, mut probe: impl FnMut() -> (bool, T)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (done, seen) = probe();
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "{what}; last seen: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn no_secret_is_on_any_command_line_of_the_host() {
    let data = tempfile::tempdir().unwrap();
    let provider = std::sync::Arc::new(LocalProvider::new(data.path(), None));
    let spec_secret = "sk-spec-secret-9f8e7d6c5b4a";
    let exec_secret = "ghp_exec_secret_0a1b2c3d4e5f";
    let sb = provider
        .create(
            &SandboxSpec {
                env: vec![("MODEL_KEY".into(), Secret::new(spec_secret))],
                ..spec(512)
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let exec = Exec {
        env: vec![("GIT_TOKEN".into(), Secret::new(exec_secret))],
        ..sh("echo \"$MODEL_KEY $GIT_TOKEN\" > /tmp/seen; sleep 300")
    };
    let running = tokio::spawn({
        let (provider, sb) = (provider.clone(), sb.clone());
        async move { run_captured(provider.as_ref(), &sb, &exec).await }
    });
    let seen = data
        .path()
        .join("sandboxes")
        .join(&sb.provider_id)
        .join("tmp/seen");
    wait_until("the command runs with both secrets", || {
        let text = std::fs::read_to_string(&seen).unwrap_or_default();
        (text == format!("{spec_secret} {exec_secret}\n"), text)
    })
    .await;
    let mut scanned = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        scanned += 1;
        let text = String::from_utf8_lossy(&cmdline);
        assert!(
            !text.contains(spec_secret) && !text.contains(exec_secret),
            "a secret is on the command line of {}: {text}",
            entry.path().display()
        );
    }
    assert!(scanned > 3, "only {scanned} command lines were readable");
    provider.kill(&sb.provider_id).await.unwrap();
    let result = running.await.unwrap();
    assert!(matches!(result, Err(SandboxError::Killed)), "{result:?}");
}

#[tokio::test]
async fn the_agent_runs_as_an_unprivileged_user_of_its_own() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let data = tempfile::tempdir().unwrap();
    // A data directory only CodeCourier may enter, as it should be.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(&spec(1024), Duration::from_secs(120))
        .await
        .unwrap();
    let script = format!(
        "id -u; id -g; cat /etc/shadow >/dev/null 2>&1 && echo shadow-read || echo shadow-refused; \
         ls {data} >/dev/null 2>&1 && echo data-read || echo data-refused; \
         touch ~/mine && stat -c %u ~/mine",
        data = data.path().display()
    );
    let out = run_captured(&provider, &sb, &sh(&script)).await.unwrap();
    assert_eq!(
        out.stdout, "1000\n1000\nshadow-refused\ndata-refused\n1000\n",
        "{out:?}"
    );
    // The toolchains an agent uses still work as that user.
    let out = run_captured(
        &provider,
        &sb,
        &sh("git --version && bash --version | head -1 && node --version && npm --version && python3 --version \
             && cd /tmp && git init -q repo && cd repo && git -c user.name=a -c user.email=a@b commit -q --allow-empty -m x && echo committed \
             && npm config get prefix && python3 -c 'import ssl, json; print(\"py ok\")'"),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("committed\n"), "{out:?}");
    assert!(out.stdout.contains("py ok\n"), "{out:?}");

    // On the host, what the sandbox and CodeCourier write there belongs to the sandbox's user:
    // CodeCourier's own when it is not root, else a uid that is nobody's.
    provider
        .write_file(&sb, "/home/user/.config/app/settings.json", b"{}", 0o600)
        .await
        .unwrap();
    let home = data
        .path()
        .join("sandboxes")
        .join(&sb.provider_id)
        .join("home");
    let owners = [
        home.join("mine").metadata().unwrap().uid(),
        home.join(".config/app/settings.json")
            .metadata()
            .unwrap()
            .uid(),
        home.join(".config/app").metadata().unwrap().uid(),
    ];
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if me == 0 {
        assert!(
            owners
                .iter()
                .all(|o| *o == owners[0] && *o >= 2_000_000_000),
            "{owners:?}"
        );
        assert!(
            sb.limits_report.contains("user: uid ") && sb.limits_report.contains(" of its own"),
            "{}",
            sb.limits_report
        );
    } else {
        assert_eq!(owners, [me; 3]);
    }
    let out = run_captured(&provider, &sb, &sh("cat ~/.config/app/settings.json"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "{}");
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn a_writable_mount_is_the_sandbox_users_and_stays_its_owners() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let data = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let repo = parent.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(
            &SandboxSpec {
                mounts: vec![Mount {
                    host: repo.clone(),
                    guest: "/srv/origin".into(),
                    writable: true,
                }],
                ..spec(512)
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let out = run_captured(
        &provider,
        &sb,
        &sh("stat -c %u /srv/origin/README.md && cat /srv/origin/README.md && echo pushed > /srv/origin/new && id -u"),
    )
    .await
    .unwrap();
    assert_eq!(
        out.stdout, "1000\nhello\n1000\n",
        "{out:?}\n{}",
        sb.limits_report
    );
    let me = std::fs::metadata(&repo).unwrap().uid();
    assert_eq!(
        std::fs::read_to_string(repo.join("new")).unwrap(),
        "pushed\n"
    );
    assert_eq!(repo.join("new").metadata().unwrap().uid(), me);
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn the_sandbox_sees_only_the_host_files_a_toolchain_needs() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None);
    let sb = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();
    let out = run_captured(
        &provider,
        &sb,
        &sh("whoami; getent passwd user; cat /etc/passwd | wc -l; \
             for f in /etc/shadow /etc/gshadow /etc/ssl/private /etc/ssh /etc/npmrc /etc/sudoers /opt; do \
               test -e $f && echo \"visible $f\"; done; \
             ls /etc/ssl/certs | grep -c . | grep -qv '^0$' && echo certs; \
             git ls-remote https://127.0.0.1:1/x 2>&1 | grep -q 'Failed to connect\\|Could not connect\\|unable to access' && echo tls-stack"),
    )
    .await
    .unwrap();
    assert_eq!(
        out.stdout,
        "user\nuser:x:1000:1000:CodeCourier sandbox:/home/user:/bin/bash\n3\ncerts\ntls-stack\n",
        "{out:?}"
    );
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn codecourier_files_are_never_shown_to_a_sandbox() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let data = repo.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("codecourier.db"), "records").unwrap();
    std::fs::write(repo.join(".env"), "ANTHROPIC_API_KEY=sk-ant-host-key").unwrap();
    std::fs::write(repo.join("README.md"), "# repo\n").unwrap();

    // A data directory under what the provider shows of its own accord (here the tools
    // directory): refused, with what to do.
    let provider = LocalProvider::new(&data, Some(repo.clone()));
    let refused = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.starts_with(&format!(
            "refusing to create a sandbox: {} (CodeCourier's own) lies under {}",
            data.canonicalize().unwrap().display(),
            repo.canonicalize().unwrap().display()
        )),
        "{refused}"
    );

    // A repository that holds them (`launch --repo .` with ./data): they are covered up inside.
    let provider = LocalProvider::new(&data, None).protecting([repo.join(".env")]);
    let sb = provider
        .create(
            &SandboxSpec {
                mounts: vec![Mount {
                    host: repo.clone(),
                    guest: "/srv/origin".into(),
                    writable: true,
                }],
                ..spec(512)
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let out = run_captured(
        &provider,
        &sb,
        &sh("cat /srv/origin/README.md; ls -A /srv/origin/data | wc -l; wc -c < /srv/origin/.env; \
             grep -rl sk-ant-host-key /srv /home /tmp /etc /run /var 2>/dev/null | head -1; echo end"),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, "# repo\n0\n0\nend\n", "{out:?}");
    provider.kill(&sb.provider_id).await.unwrap();
}

/// Connects from inside the sandbox and says how it went: `connected <reply>` or the error.
fn connect_from_inside(host: &str, port: u16) -> Exec {
    let family = if host.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let program = [
        "import socket".to_string(),
        format!("s = socket.socket(socket.{family})"),
        "s.settimeout(10)".into(),
        "try:".into(),
        format!("    s.connect(('{host}', {port}))"),
        "    s.sendall(b'ping')".into(),
        "    print('connected', s.recv(100).decode())".into(),
        "except OSError as e:".into(),
        "    print(type(e).__name__, e.errno)".into(),
    ]
    .join("\n");
    Exec {
        argv: vec!["python3".into(), "-c".into(), program],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_sandbox_has_a_network_of_its_own_reaching_the_host_only_through_forwards() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None)
        .with_init_binary(env!("CARGO_BIN_EXE_codecourier").into());
    let sb = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        sb.limits_report
            .contains("network: its own (loopback only, and what CodeCourier forwards)"),
        "{}",
        sb.limits_report
    );

    // A service on the host's loopback: not reachable from inside.
    let host_service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = host_service.local_addr().unwrap().port();
    let out = run_captured(&provider, &sb, &connect_from_inside("127.0.0.1", port))
        .await
        .unwrap();
    assert_eq!(out.stdout, "ConnectionRefusedError 111\n", "{out:?}");
    // Nothing outside either: link-local (cloud metadata), the LAN, the internet.
    for address in ["169.254.169.254", "10.0.0.1", "192.168.1.1", "1.1.1.1"] {
        let out = run_captured(&provider, &sb, &connect_from_inside(address, 80))
            .await
            .unwrap();
        assert_eq!(out.stdout, "OSError 101\n", "{address}: {out:?}");
    }
    let nothing = tokio::time::timeout(Duration::from_millis(1), host_service.accept()).await;
    assert!(nothing.is_err(), "the host's service was reached");

    // An echo server on a host socket, forwarded to the sandbox's port 8080.
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("echo.sock");
    let echo = tokio::net::UnixListener::bind(&socket).unwrap();
    let served = tokio::spawn(async move {
        let mut served = 0;
        loop {
            let (mut conn, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 4];
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&[b"echo:", &buf[..]].concat())
                .await
                .unwrap();
            served += 1;
            if served == 2 {
                return served;
            }
        }
    });
    provider.forward(&sb, 8080, &socket).await.unwrap();
    let out = run_captured(&provider, &sb, &connect_from_inside("127.0.0.1", 8080))
        .await
        .unwrap();
    assert_eq!(out.stdout, "connected echo:ping\n", "{out:?}");
    // The command keeps its exit status, stdin and environment behind the forwarder.
    let exec = Exec {
        stdin: Some(b"input".to_vec()),
        env: vec![("EXTRA".into(), Secret::new("x"))],
        ..sh("cat; echo \" $EXTRA\"; python3 -c \"import socket; s=socket.create_connection(('localhost', 8080)); s.sendall(b'pong'); print(s.recv(9).decode())\"; exit 7")
    };
    let out = run_captured(&provider, &sb, &exec).await.unwrap();
    assert_eq!(out.stdout, "input x\necho:pong\n", "{out:?}");
    assert_eq!(out.status.code, Some(7));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .unwrap()
            .unwrap(),
        2
    );
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn with_egress_open_the_sandbox_shares_the_hosts_network_and_says_so() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None).with_egress_open(true);
    let sb = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        sb.limits_report
            .ends_with("; network: host's (egress open)"),
        "{}",
        sb.limits_report
    );
    let host_service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = host_service.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut conn, _) = host_service.accept().await.unwrap();
        conn.write_all(b"hi").await.unwrap();
    });
    let out = run_captured(&provider, &sb, &connect_from_inside("127.0.0.1", port))
        .await
        .unwrap();
    assert_eq!(out.stdout, "connected hi\n", "{out:?}");
    accepted.await.unwrap();
    let refused = provider
        .forward(&sb, 8080, std::path::Path::new("/nonexistent.sock"))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("shares the host's network"), "{refused}");
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn a_fork_bomb_ends_at_the_process_limit_and_the_host_stays_responsive() {
    let data = tempfile::tempdir().unwrap();
    let provider = std::sync::Arc::new(LocalProvider::new(data.path(), None).with_pids_max(64));
    let sb = provider
        .create(&spec(512), Duration::from_secs(120))
        .await
        .unwrap();
    if !sb.limits_report.contains("64 processes enforced") {
        // Never claimed where it cannot hold; nothing more to see on this machine.
        assert!(
            sb.limits_report.contains("64 processes NOT enforced ("),
            "{}",
            sb.limits_report
        );
        provider.kill(&sb.provider_id).await.unwrap();
        return;
    }
    // Forks until the limit refuses one: the count stays below it, and the status says so.
    let counting = "import os, time\n\
n = 0\n\
try:\n    while n < 1000:\n        if os.fork() == 0:\n            time.sleep(120)\n            os._exit(0)\n        n += 1\n\
except OSError as e:\n    print(n, e.errno)\n";
    let exec = Exec {
        argv: vec!["python3".into(), "-c".into(), counting.into()],
        ..Default::default()
    };
    let out = run_captured(provider.as_ref(), &sb, &exec).await.unwrap();
    let (forked, errno) = out.stdout.trim().split_once(' ').expect(&out.stdout);
    let forked: u32 = forked.parse().unwrap();
    assert!((10..64).contains(&forked), "{out:?}");
    assert_eq!(errno, "11", "EAGAIN: {out:?}");
    assert!(out.status.pids_limited, "{out:?}");

    // A real fork bomb: it fills the limit and stays there while the host carries on.
    let mut bomb = tokio::spawn({
        let (provider, sb) = (provider.clone(), sb.clone());
        async move {
            run_captured(
                provider.as_ref(),
                &sb,
                &Exec {
                    // bash, not sh: it retries a refused fork, so the bomb keeps pressing.
                    argv: [
                        "bash",
                        "-c",
                        "bomb() { bomb | bomb & }; bomb 2>/dev/null; exec sleep 100",
                    ]
                    .map(String::from)
                    .to_vec(),
                    ..Default::default()
                },
            )
            .await
        }
    });
    wait_until("the bomb fills the process limit", || {
        let n = processes_of(&sb).len();
        if bomb.is_finished() {
            let result = futures_util::FutureExt::now_or_never(&mut bomb);
            panic!("the bomb ended before filling the limit: {result:?}");
        }
        (n >= 40, n)
    })
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        assert!(std::process::Command::new("true")
            .status()
            .unwrap()
            .success());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let n = processes_of(&sb).len();
        assert!(n <= 64, "{n} processes in a sandbox limited to 64");
    }
    let other = provider
        .create(&spec(512), Duration::from_secs(60))
        .await
        .unwrap();
    let out = run_captured(provider.as_ref(), &other, &sh("echo alive"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "alive\n");
    provider.kill(&other.provider_id).await.unwrap();

    // Forks refused without pause for seconds: the sandbox is ended, saying why.
    let result = tokio::time::timeout(Duration::from_secs(30), bomb)
        .await
        .expect("the bomb still runs 30 s after filling the limit")
        .unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(err, SandboxError::ProcessLimit { limit: 64 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the sandbox kept hitting its limit of 64 processes (a fork bomb?) and was ended"
    );
    assert!(
        processes_of(&sb).is_empty(),
        "left behind: {:?}",
        processes_of(&sb)
    );
    provider.kill(&sb.provider_id).await.unwrap();
}

#[tokio::test]
async fn a_sandbox_that_fills_its_disk_is_ended_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new(data.path(), None).with_disk_limit_mb(16);
    let sb = provider
        .create(&spec(512), Duration::from_secs(120))
        .await
        .unwrap();
    assert!(
        sb.limits_report
            .contains("disk 16 MB enforced (checked while it runs)"),
        "{}",
        sb.limits_report
    );
    // Many files, one after another: the measure while it runs ends it.
    let started = Instant::now();
    let result = run_captured(
        &provider,
        &sb,
        &sh("i=0; while [ $i -lt 300 ]; do head -c 1048576 /dev/zero > /tmp/f$i || exit 9; i=$((i+1)); sleep 0.02; done; echo survived"),
    )
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, SandboxError::DiskLimit { limit_mb: 16 }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "the sandbox used more than 16 MB of disk");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(matches!(
        run_captured(&provider, &sb, &sh("true")).await,
        Err(SandboxError::DiskLimit { .. })
    ));
    let dir = data.path().join("sandboxes").join(&sb.provider_id);
    provider.kill(&sb.provider_id).await.unwrap();
    assert!(!dir.join("tmp").exists());

    // One file growing past the bound: stopped just past it, and the sandbox ended.
    let sb = provider
        .create(&spec(512), Duration::from_secs(120))
        .await
        .unwrap();
    let result = run_captured(&provider, &sb, &sh("head -c 200M /dev/zero > ~/big")).await;
    assert!(
        matches!(result, Err(SandboxError::DiskLimit { limit_mb: 16 })),
        "{result:?}"
    );
    let big = data
        .path()
        .join("sandboxes")
        .join(&sb.provider_id)
        .join("home/big");
    assert!(big.metadata().unwrap().len() <= 17 * 1024 * 1024);
    provider.kill(&sb.provider_id).await.unwrap();
}
