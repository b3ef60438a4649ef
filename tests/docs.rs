//! The repository's Markdown holds together: every relative link reaches a
//! file or directory, every `#anchor` into a Markdown file names one of its
//! headings, every `make TARGET` written in code is a target of the
//! Makefile, and the README stays a short front door.
//!
//! The files are those `git ls-files` lists from the workspace root, tracked
//! or new and not ignored (so a page is checked before it is committed),
//! except under `target/` and `.venv*`. Links are `[text](path)`,
//! `[text](path#anchor)`, images and reference definitions (`[x]: path`),
//! outside code; `http(s)` and `mailto` links are left alone. Anchors are
//! compared with GitHub's heading slugs: lowercase, spaces to `-`, every
//! other character that is not a letter, a digit, `-` or `_` dropped, and
//! `-1`, `-2`, ... after repeated headings. Every failure names the file and
//! the line; all of them are reported at once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The README is the front door: the depth lives in `docs/`.
const README_MAX_LINES: usize = 220;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The Markdown files of the repository, relative to `root`.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            "*.md",
        ])
        .output()
        .expect("running git ls-files (is git installed?)");
    assert!(
        out.status.success(),
        "git ls-files failed in {}: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: BTreeSet<PathBuf> = out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .collect();
    listed
        .into_iter()
        .filter(|p| !skipped(p))
        // A tracked file deleted in the working tree has nothing to check.
        .filter(|p| root.join(p).is_file())
        .collect()
}

fn skipped(path: &Path) -> bool {
    path.components().any(|c| match c {
        Component::Normal(name) => {
            let name = name.to_string_lossy();
            name == "target" || name.starts_with(".venv")
        }
        _ => false,
    })
}

/// A Markdown file split into what the checks read.
#[derive(Default)]
struct Markdown {
    /// (line, destination) of every link outside code.
    links: Vec<(usize, String)>,
    /// The slugs of its headings, as GitHub makes them.
    slugs: HashSet<String>,
    /// (line, text) of every code span and every line of a fenced block.
    code: Vec<(usize, String)>,
}

fn parse(text: &str) -> Markdown {
    let mut md = Markdown::default();
    // Fenced blocks: their lines are code; the rest is prose, kept line for
    // line (a fenced line becomes empty) so offsets map back to lines.
    let mut prose = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let run = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        match fence {
            Some((c, len)) => {
                if indent <= 3 && run(c) >= len && trimmed.trim_start_matches(c).trim().is_empty() {
                    fence = None;
                } else {
                    md.code.push((n, line.to_string()));
                }
                prose.push(String::new());
                continue;
            }
            None => {
                // A backtick fence's info string holds no backtick.
                let opener = ['`', '~'].into_iter().find(|&c| {
                    indent <= 3
                        && run(c) >= 3
                        && (c == '~' || !trimmed.trim_start_matches('`').contains('`'))
                });
                if let Some(c) = opener {
                    fence = Some((c, run(c)));
                    prose.push(String::new());
                    continue;
                }
            }
        }
        if let Some(heading) = heading_text(line) {
            let base = slug(&heading);
            let count = seen.entry(base.clone()).or_insert(0);
            let slug = if *count == 0 {
                base.clone()
            } else {
                format!("{base}-{count}")
            };
            *count += 1;
            md.slugs.insert(slug);
        }
        prose.push(line.to_string());
    }
    let prose = prose.join("\n");
    let line_of = |offset: usize| prose[..offset].matches('\n').count() + 1;

    // Code spans: a run of n backticks up to the next run of exactly n.
    let bytes = prose.as_bytes();
    let mut masked = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i] == b'`' {
            i += 1;
        }
        let n = i - start;
        let mut j = i;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let k = j;
                while j < bytes.len() && bytes[j] == b'`' {
                    j += 1;
                }
                if j - k == n {
                    close = Some(k);
                    break;
                }
            } else {
                j += 1;
            }
        }
        if let Some(close) = close {
            md.code
                .push((line_of(start), prose[i..close].replace('\n', " ")));
            for b in &mut masked[start..close + n] {
                if *b != b'\n' {
                    *b = b' ';
                }
            }
            i = close + n;
        }
    }
    let masked = String::from_utf8(masked).expect("only ASCII bytes were masked");

    // Inline links and images: `](destination)`.
    let mut from = 0;
    while let Some(at) = masked[from..].find("](") {
        let start = from + at + 2;
        if let Some(dest) = destination(&masked[start..]) {
            md.links.push((line_of(start), dest));
        }
        from = start;
    }
    // Reference definitions: `[label]: destination`.
    for (i, line) in masked.lines().enumerate() {
        let t = line.trim_start();
        if line.len() - t.len() > 3 || !t.starts_with('[') {
            continue;
        }
        if let (Some(end), Some(first)) = (t.find("]:"), t.find(']')) {
            if end != first {
                continue;
            }
            if let Some(dest) = t[end + 2..].split_whitespace().next() {
                md.links
                    .push((i + 1, dest.trim_matches(['<', '>']).to_string()));
            }
        }
    }
    md
}

/// The text of an ATX heading (`# ...` to `###### ...`), if the line is one.
fn heading_text(line: &str) -> Option<String> {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 {
        return None;
    }
    let hashes = t.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &t[hashes..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut text = rest.trim();
    // An optional closing run of `#`, after a space.
    let stripped = text.trim_end_matches('#');
    if stripped.is_empty() || stripped.ends_with([' ', '\t']) {
        text = stripped.trim_end();
    }
    Some(text.to_string())
}

/// GitHub's anchor for a heading: links reduced to their text, lowercase,
/// spaces to `-`, anything but letters, digits, `-` and `_` dropped.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](url)` → `text`.
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](") else {
            break;
        };
        let Some(close) = rest[open + mid..].find(')') else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..open + mid]);
        rest = &rest[open + mid + close + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The destination of an inline link, from just after its `](`.
fn destination(after: &str) -> Option<String> {
    let after = after.trim_start_matches([' ', '\t']);
    if let Some(inner) = after.strip_prefix('<') {
        return inner.find('>').map(|end| inner[..end].to_string());
    }
    let mut depth = 0usize;
    for (i, c) in after.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(after[..i].to_string()),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(after[..i].to_string()),
            _ => {}
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` without its `.` and `..` components, relative to `root` when it
/// lies under it: what a failure names.
fn shown_path(root: &Path, path: &Path) -> String {
    let mut parts: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(parts.last(), Some(Component::Normal(_))) => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let clean: PathBuf = parts.iter().collect();
    clean
        .strip_prefix(root)
        .unwrap_or(&clean)
        .display()
        .to_string()
}

fn external(dest: &str) -> bool {
    let lower = dest.to_ascii_lowercase();
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

/// The targets of a Makefile: `name:` at column 0 (not `name :=`).
fn make_targets(makefile: &str) -> HashSet<String> {
    let mut targets = HashSet::new();
    for line in makefile.lines() {
        if line.starts_with([' ', '\t', '#']) {
            continue;
        }
        let Some(colon) = line.find(':') else {
            continue;
        };
        if line[colon + 1..].starts_with('=') {
            continue;
        }
        for name in line[..colon].split_whitespace() {
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
            {
                targets.insert(name.to_string());
            }
        }
    }
    targets
}

/// The target of every `make TARGET` in a piece of code: the first word
/// after `make` that is neither an option (`-k`) nor a variable (`X=1`).
fn make_invocations(code: &str) -> Vec<String> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, &word) in words.iter().enumerate() {
        if word != "make" {
            continue;
        }
        for &next in &words[i + 1..] {
            if next.starts_with('#') || ["&&", "||", ";", "|", ">", "<"].contains(&next) {
                break;
            }
            if next.starts_with('-') || next.contains('=') {
                continue;
            }
            let name: String = next
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.-/".contains(*c))
                .collect();
            let name = name.trim_end_matches('.').to_string();
            if !name.is_empty() {
                found.push(name);
            }
            break;
        }
    }
    found
}

/// Every failure of the Markdown files `files` (relative to `root`).
fn check(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap_or_default();
    let targets = make_targets(&makefile);
    let mut slugs: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut slugs_of = |path: &Path| -> HashSet<String> {
        slugs
            .entry(path.to_path_buf())
            .or_insert_with(|| parse(&std::fs::read_to_string(path).unwrap_or_default()).slugs)
            .clone()
    };
    for file in files {
        let shown = file.display();
        let path = root.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("{shown}: cannot be read: {e}"));
                continue;
            }
        };
        let md = parse(&text);
        let dir = path.parent().unwrap_or(root).to_path_buf();
        for (line, dest) in &md.links {
            if dest.is_empty() || external(dest) {
                continue;
            }
            let (target, anchor) = match dest.split_once('#') {
                Some((target, anchor)) => (target, Some(anchor)),
                None => (dest.as_str(), None),
            };
            let target = percent_decode(target);
            let resolved = if target.is_empty() {
                path.clone()
            } else if let Some(from_root) = target.strip_prefix('/') {
                root.join(from_root)
            } else {
                dir.join(&target)
            };
            let resolved_shown = shown_path(root, &resolved);
            if !resolved.exists() {
                failures.push(format!(
                    "{shown}:{line}: link `{dest}`: {resolved_shown} does not exist"
                ));
                continue;
            }
            let is_markdown = resolved.is_file()
                && resolved
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("md"));
            if let (Some(anchor), true) = (anchor, is_markdown) {
                let anchor = percent_decode(anchor);
                let found = if target.is_empty() {
                    md.slugs.clone()
                } else {
                    slugs_of(&resolved)
                };
                if !found.contains(&anchor) {
                    failures.push(format!(
                        "{shown}:{line}: link `{dest}`: {resolved_shown} has no heading whose anchor is #{anchor}"
                    ));
                }
            }
        }
        for (line, code) in &md.code {
            for target in make_invocations(code) {
                if !targets.contains(&target) {
                    failures.push(format!(
                        "{shown}:{line}: `make {target}`: the Makefile has no target `{target}`"
                    ));
                }
            }
        }
        if file == Path::new("README.md") {
            let lines = text.lines().count();
            if lines > README_MAX_LINES {
                failures.push(format!(
                    "README.md: {lines} lines, more than {README_MAX_LINES}: move the depth to docs/"
                ));
            }
        }
    }
    failures
}

#[test]
fn every_link_anchor_and_make_target_in_the_markdown_resolves() {
    let root = workspace_root();
    let files = markdown_files(&root);
    assert!(
        files.iter().any(|f| f == Path::new("README.md")),
        "git ls-files found no README.md in {}: {files:?}",
        root.display()
    );
    let failures = check(&root, &files);
    assert!(
        failures.is_empty(),
        "{} problem(s) in the Markdown files:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn the_checker_reports_what_does_not_resolve() {
    let dir = std::env::temp_dir().join(format!("docs-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "X := 1\ndemo: setup ## run\n\tcargo run\n",
    )
    .unwrap();
    let long = "line\n".repeat(README_MAX_LINES);
    std::fs::write(
        dir.join("README.md"),
        format!(
            "# Front door\n\n[ok](docs/page.md#a-b_c-d) [ok too](docs/) [web](https://example.com/x)\n\
             [gone](docs/missing.md) [bad anchor](docs/page.md#nope) [self](#front-door)\n\
             `[not a link](nowhere)` and `make demo ARGS=\"-x\"`, `make bench`\n\n\
             ```sh\nmake demo\nmake -k nothing-here\n```\n{long}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("docs/page.md"),
        "# Page\n\n## A, b_c: `d`\n\n## Again\n\n## Again\n\n[up](../README.md#front-door) [twice](#again-1) [thrice](#again-2)\n",
    )
    .unwrap();
    let files = [PathBuf::from("README.md"), PathBuf::from("docs/page.md")];
    let failures = check(&dir, &files);
    std::fs::remove_dir_all(&dir).unwrap();
    let expected = [
        "README.md:4: link `docs/missing.md`: docs/missing.md does not exist",
        "README.md:4: link `docs/page.md#nope`: docs/page.md has no heading whose anchor is #nope",
        "README.md:5: `make bench`: the Makefile has no target `bench`",
        "README.md:9: `make nothing-here`: the Makefile has no target `nothing-here`",
        "docs/page.md:9: link `#again-2`: docs/page.md has no heading whose anchor is #again-2",
    ];
    for e in expected {
        assert!(
            failures.iter().any(|f| f == e),
            "missing {e:?} in {failures:#?}"
        );
    }
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("README.md: 230 lines")),
        "{failures:#?}"
    );
    assert_eq!(failures.len(), expected.len() + 1, "{failures:#?}");
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(
        slug("Run it locally: `make demo`"),
        "run-it-locally-make-demo"
    );
    assert_eq!(
        slug("Repartition workflow: lake by arrival time → table by event time"),
        "repartition-workflow-lake-by-arrival-time--table-by-event-time"
    );
    assert_eq!(slug("`provider-etl.asl.json`"), "provider-etlasljson");
    assert_eq!(
        slug("Exactly once under retries: `tests/exactly_once.rs`"),
        "exactly-once-under-retries-testsexactly_oncers"
    );
    assert_eq!(slug("See [the docs](docs/README.md)"), "see-the-docs");
    assert_eq!(heading_text("## Closed ##").as_deref(), Some("Closed"));
    assert!(heading_text("#hashtag").is_none());
}
