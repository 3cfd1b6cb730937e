//! What a repository's lockfiles say to install before an agent starts, when its project sets no
//! setup script (`auto_setup`). Pure: the setup phase lists the project directory and asks here.

/// One install the setup phase runs in the project directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Install {
    /// The file that asked for it.
    pub lockfile: &'static str,
    /// The program the command needs; when the sandbox lacks it, the step is skipped with a note.
    pub program: &'static str,
    pub command: &'static str,
}

/// In order of preference: one install per ecosystem (a pnpm or yarn lockfile wins over npm's).
const KNOWN: [Install; 8] = [
    Install {
        lockfile: "pnpm-lock.yaml",
        program: "pnpm",
        command: "pnpm install --frozen-lockfile",
    },
    Install {
        lockfile: "yarn.lock",
        program: "yarn",
        command: "yarn install --frozen-lockfile",
    },
    Install {
        lockfile: "package-lock.json",
        program: "npm",
        command: "npm ci --no-audit --no-fund",
    },
    Install {
        lockfile: "uv.lock",
        program: "uv",
        command: "uv sync --frozen",
    },
    Install {
        lockfile: "requirements.txt",
        program: "python3",
        command: "python3 -m pip install --user --disable-pip-version-check -r requirements.txt",
    },
    Install {
        lockfile: "Cargo.lock",
        program: "cargo",
        command: "cargo fetch --locked",
    },
    Install {
        lockfile: "go.sum",
        program: "go",
        command: "go mod download",
    },
    Install {
        lockfile: "Gemfile.lock",
        program: "bundle",
        command: "bundle install",
    },
];

/// Which ecosystem an install belongs to: the first lockfile of each wins.
fn ecosystem(lockfile: &str) -> &'static str {
    match lockfile {
        "pnpm-lock.yaml" | "yarn.lock" | "package-lock.json" => "node",
        "uv.lock" | "requirements.txt" => "python",
        "Cargo.lock" => "rust",
        "go.sum" => "go",
        _ => "ruby",
    }
}

/// The installs the files at the repository's top level call for.
pub fn installs(top_level: &[&str]) -> Vec<Install> {
    let mut chosen: Vec<Install> = Vec::new();
    for install in KNOWN {
        let present = top_level.contains(&install.lockfile);
        let covered = chosen
            .iter()
            .any(|c| ecosystem(c.lockfile) == ecosystem(install.lockfile));
        if present && !covered {
            chosen.push(install);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(files: &[&str]) -> Vec<&'static str> {
        installs(files).iter().map(|i| i.command).collect()
    }

    #[test]
    fn each_lockfile_names_its_install_and_one_per_ecosystem_runs() {
        assert!(commands(&["README.md", "src"]).is_empty());
        assert_eq!(
            commands(&["package-lock.json"]),
            ["npm ci --no-audit --no-fund"]
        );
        assert_eq!(
            commands(&["package-lock.json", "pnpm-lock.yaml"]),
            ["pnpm install --frozen-lockfile"]
        );
        assert_eq!(
            commands(&["requirements.txt", "uv.lock", "Cargo.lock", "go.sum"]),
            [
                "uv sync --frozen",
                "cargo fetch --locked",
                "go mod download"
            ]
        );
        // Only the top level counts, by exact name.
        assert!(commands(&["sub/package-lock.json", "Cargo.lock.bak"]).is_empty());
    }
}
