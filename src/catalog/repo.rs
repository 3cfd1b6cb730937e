//! A repository as typed: owner/name, a GitHub URL (HTTPS or SSH), or a local git repository's
//! path when the operator allows local paths.

use std::path::{Path, PathBuf};

use super::request::RepoRef;

pub(super) fn parse_repo(text: &str, allow_local: bool) -> Result<RepoRef, String> {
    const FORMS: &str = "give owner/name, https://github.com/owner/name, git@github.com:owner/name, or a local repository path";
    if let Some(path) = text.strip_prefix("file://") {
        return local_repo(Path::new(path), allow_local);
    }
    if text.starts_with('/') || text.starts_with('.') || text.starts_with('~') {
        let path = match text.strip_prefix('~') {
            Some(rest) => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(rest.trim_start_matches('/')),
                None => return Err("starts with ~ but HOME is not set; give the full path".into()),
            },
            None => PathBuf::from(text),
        };
        return local_repo(&path, allow_local);
    }
    let github_path = if let Some(rest) = text
        .strip_prefix("https://github.com/")
        .or_else(|| text.strip_prefix("https://www.github.com/"))
        .or_else(|| text.strip_prefix("ssh://git@github.com/"))
        .or_else(|| text.strip_prefix("git@github.com:"))
    {
        rest.trim_end_matches('/')
    } else if text.contains("://") || text.contains('@') {
        return Err(format!("is not a GitHub repository; only GitHub is supported (for another host, clone it and give the local path); {FORMS}"));
    } else {
        text
    };
    let github_path = github_path.strip_suffix(".git").unwrap_or(github_path);
    match github_path.split_once('/') {
        Some((owner, name)) if is_github_owner(owner) && is_github_repo_name(name) => {
            Ok(RepoRef::Github {
                owner: owner.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(format!("is not a repository reference; {FORMS}")),
    }
}

fn local_repo(path: &Path, allow_local: bool) -> Result<RepoRef, String> {
    if !allow_local {
        return Err("is a local path, which is not allowed here; name a GitHub repository (an operator can allow local paths with CODECOURIER_ALLOW_LOCAL_REPOS=true)".into());
    }
    let path = path
        .canonicalize()
        .map_err(|_| "does not exist on this machine".to_string())?;
    let is_worktree = path.join(".git").exists();
    let is_bare = path.join("HEAD").is_file() && path.join("objects").is_dir();
    if !path.is_dir() || !(is_worktree || is_bare) {
        return Err(
            "is not a git repository (no .git inside); run git init there or give another path"
                .into(),
        );
    }
    Ok(RepoRef::Local { path })
}

fn is_github_owner(owner: &str) -> bool {
    (1..=39).contains(&owner.len())
        && !owner.starts_with('-')
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_github_repo_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_forms() {
        let gh = |o: &str, n: &str| RepoRef::Github {
            owner: o.into(),
            name: n.into(),
        };
        for (text, expected) in [
            ("acme/widgets", gh("acme", "widgets")),
            ("https://github.com/acme/widgets", gh("acme", "widgets")),
            ("https://github.com/acme/widgets.git", gh("acme", "widgets")),
            ("https://github.com/acme/widgets/", gh("acme", "widgets")),
            ("git@github.com:acme/my.repo.git", gh("acme", "my.repo")),
            (
                "ssh://git@github.com/acme/widgets.git",
                gh("acme", "widgets"),
            ),
        ] {
            assert_eq!(parse_repo(text, false).unwrap(), expected, "{text}");
        }
        for bad in [
            "acme",
            "acme/",
            "/acme",
            "https://gitlab.com/acme/widgets",
            "a/b/c",
            "-x/y",
            "acme/..",
        ] {
            assert!(parse_repo(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_repos_need_permission_and_a_git_repository() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().to_str().unwrap().to_string();
        assert!(parse_repo(&plain, true)
            .unwrap_err()
            .contains("not a git repository"));
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let expected = RepoRef::Local {
            path: dir.path().canonicalize().unwrap(),
        };
        assert_eq!(parse_repo(&plain, true).unwrap(), expected);
        assert_eq!(
            parse_repo(&format!("file://{plain}"), true).unwrap(),
            expected
        );
        assert!(parse_repo(&plain, false)
            .unwrap_err()
            .contains("CODECOURIER_ALLOW_LOCAL_REPOS"));
        assert!(parse_repo("./no/such/repo", true)
            .unwrap_err()
            .contains("does not exist"));
    }
}
