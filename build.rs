//! Names the git commit the binary is built from, for `rentabot --version` and the
//! `rentabot_build_info` metric: `RENTABOT_BUILD_COMMIT` from the environment when set
//! (an image built from a tarball, without `.git`), else `git rev-parse --short HEAD`,
//! else `unknown`. It never fails the build: no git, no repository, a detached or odd
//! checkout all give `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The longest commit name taken (a full SHA-256 object name is 64 hex digits).
const MAX_COMMIT: usize = 64;

fn main() {
    println!("cargo:rerun-if-env-changed=RENTABOT_BUILD_COMMIT");
    // Where git looks: a build that found no repository watches no file of one, so
    // this is what reruns it once there is one.
    println!("cargo:rerun-if-env-changed=GIT_DIR");
    let (commit, source) = match std::env::var("RENTABOT_BUILD_COMMIT") {
        Ok(given) if !given.is_empty() => (given.trim().to_owned(), "env"),
        _ => {
            watch_head();
            let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_default();
            (commit, "git")
        }
    };
    // Where the name came from, for tests/cli.rs (which cannot tell an override from
    // git's answer by the name alone): env, git, or none.
    let (commit, source) = if is_commit_name(&commit) {
        (commit, source)
    } else {
        if !commit.is_empty() {
            println!(
                "cargo:warning=RENTABOT_BUILD_COMMIT `{commit}` is not a commit name \
                 (up to {MAX_COMMIT} letters, digits, '.', '-' or '_'); using `unknown`"
            );
        }
        ("unknown".to_owned(), "none")
    };
    println!("cargo:rustc-env=RENTABOT_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=RENTABOT_BUILD_COMMIT_SOURCE={source}");
}

fn is_commit_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_COMMIT
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Reruns this script when HEAD moves: HEAD itself (a checkout, a detached commit) and
/// the branch it points at (a commit), in a worktree as in a plain clone. Only files
/// that exist are named: cargo reruns on every build for a missing one.
fn watch_head() {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) else {
        return;
    };
    watch(&git_dir.join("HEAD"));
    if let (Some(common), Some(branch)) = (
        git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        watch(&common.join(branch));
        watch(&common.join("packed-refs"));
    }
}

fn watch(path: &Path) {
    if path.is_file() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git ARGS` in the package's directory: its trimmed output, or None on any failure.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
