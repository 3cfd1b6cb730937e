//! A launch's sandbox reaches the outside only through CodeCourier's egress proxy: from inside,
//! an allow-listed host (a stand-in registry) answers, and a host off the list is refused with a
//! message that names the list and how to add to it.

mod support;

use support::npm_registry::NpmRegistry;
use support::{run_json, World};

#[tokio::test(flavor = "multi_thread")]
async fn from_inside_a_listed_host_answers_and_one_off_the_list_is_refused_naming_the_list() {
    let world = World::new();
    let registry = NpmRegistry::start(&[("widget-core", "1.2.0")]).await;
    let listed = format!("http://{}/widget-core", registry.host_port);
    let urls = format!("FETCH_URLS={listed} http://example.com/ http://127.0.0.3:9/");
    let mut cmd = world.launch(&[
        "--prompt",
        "Fetch them",
        "--env",
        "FAKE_CLAUDE=fetch",
        "--env",
        &urls,
    ]);
    cmd.env("CODECOURIER_EGRESS_ALLOW", &registry.host_port);
    let (code, r, stderr) = tokio::task::spawn_blocking(move || run_json(cmd))
        .await
        .unwrap();
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let fetched = world.file_on_branch(r["branch"].as_str().unwrap(), "fetched.txt");
    let lines: Vec<&str> = fetched.lines().collect();
    assert_eq!(lines.len(), 3, "{fetched}");
    assert!(
        lines[0].starts_with(&format!("{listed} 200 ")) && lines[0].contains("\"1.2.0\""),
        "{fetched}"
    );
    for (line, target) in [(lines[1], "example.com:80"), (lines[2], "127.0.0.3:9")] {
        assert!(
            line.contains(" 403 ")
                && line.contains(&format!(
                    "CodeCourier's egress proxy refused {target}: it is not on the allow list ("
                ))
                && line.contains("registry.npmjs.org")
                && line.contains(&registry.host_port)
                && line.contains("CODECOURIER_EGRESS_ALLOW"),
            "{fetched}"
        );
    }
}
