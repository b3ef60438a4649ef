//! The layout docs/architecture.md describes, checked: a function crate is a
//! handler and its wiring, its `main` is short and reads the event the one
//! way Lambda delivers it, and no file of the shared library imports a file
//! that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A file's code without its comments and its test module (by convention
/// the last item, after `#[cfg(test)]`): a doc link is not an import, and
/// tests may reach anywhere.
fn product_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a file under `src` (`stream/format/mod.rs` is
/// `["stream", "format"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` that is a module.
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| {
        let dir = path[..n].iter().fold(src.to_path_buf(), |d, p| d.join(p));
        [dir.with_extension("rs"), dir.join("mod.rs")]
            .into_iter()
            .find(|f| f.is_file())
    })
}

/// The child modules a file declares (`mod name;`, `pub mod name;`).
fn children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

/// Every module path a file's code names through `crate::`, `super::`,
/// `self::` or one of its child modules.
fn referenced(module: &[String], code: &str) -> Vec<Vec<String>> {
    let children = children(code);
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(word(bytes[i - 1]) || bytes[i - 1] == b':');
        let rest = &bytes[i..];
        let base: Option<(Vec<String>, usize)> = if starts_word && rest.starts_with(b"crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if starts_word && rest.starts_with(b"super::") {
            // Each `super` leaves one module (a `mod.rs` is its directory's).
            let mut m = module.to_vec();
            let mut n = 0;
            while rest[n..].starts_with(b"super::") {
                n += "super::".len();
                m.pop();
            }
            Some((m, n))
        } else if starts_word && rest.starts_with(b"self::") {
            Some((module.to_vec(), "self::".len()))
        } else if starts_word
            && children
                .iter()
                .any(|c| rest.starts_with(format!("{c}::").as_bytes()))
        {
            Some((module.to_vec(), 0))
        } else {
            None
        };
        match base {
            Some((mut path, skip)) => {
                let mut j = i + skip;
                loop {
                    let start = j;
                    while j < bytes.len() && word(bytes[j]) {
                        j += 1;
                    }
                    if start == j {
                        break;
                    }
                    path.push(code[start..j].to_string());
                    if bytes[j..].starts_with(b"::") {
                        j += 2;
                    } else {
                        break;
                    }
                }
                out.push(path);
                i = j.max(i + 1);
            }
            None => i += 1,
        }
    }
    out
}

/// The import graph of the shared library: file → the files it names.
fn shared_imports() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let src = repo().join("shared/src");
    let mut graph = BTreeMap::new();
    for file in rust_files(&src) {
        let module = module_of(&src, &file);
        let targets: BTreeSet<PathBuf> = referenced(&module, &product_code(&file))
            .iter()
            .filter_map(|p| file_of(&src, p))
            .filter(|t| *t != file)
            .collect();
        graph.insert(file, targets);
    }
    graph
}

#[test]
fn no_file_of_the_shared_library_imports_a_file_that_imports_it_back() {
    let graph = shared_imports();
    let src = repo().join("shared/src");
    let name = |p: &PathBuf| p.strip_prefix(&src).unwrap().display().to_string();
    // Any cycle, not only pairs: a depth-first search for a back edge.
    fn visit(
        at: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        stack: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
        cycles: &mut Vec<Vec<PathBuf>>,
    ) {
        if done.contains(at) {
            return;
        }
        if let Some(pos) = stack.iter().position(|p| p == at) {
            cycles.push(stack[pos..].to_vec());
            return;
        }
        stack.push(at.clone());
        for next in graph.get(at).into_iter().flatten() {
            visit(next, graph, stack, done, cycles);
        }
        stack.pop();
        done.insert(at.clone());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for file in graph.keys() {
        visit(file, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    let shown: Vec<String> = cycles
        .iter()
        .map(|c| {
            let mut names: Vec<String> = c.iter().map(name).collect();
            names.push(names[0].clone());
            names.join(" → ")
        })
        .collect();
    assert!(shown.is_empty(), "import cycles:\n{}", shown.join("\n"));
}

#[test]
fn the_cycle_check_sees_crate_and_super_paths() {
    let module = vec![
        "stream".to_string(),
        "format".to_string(),
        "csv".to_string(),
    ];
    let found = referenced(
        &module,
        "mod rows;\nuse super::Rejection;\nuse crate::lake::keys::IngestHour;\n\
         let x = foo::crate::no;\nrows::split(b);",
    );
    assert_eq!(
        found,
        vec![
            vec!["stream", "format", "Rejection"],
            vec!["lake", "keys", "IngestHour"],
            vec!["stream", "format", "csv", "rows", "split"],
        ]
    );
    let src = repo().join("shared/src");
    let file = |p: &[&str]| file_of(&src, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        file(&["stream", "format", "Rejection"]),
        Some(src.join("stream/format/mod.rs"))
    );
    assert_eq!(
        file(&["lake", "keys", "IngestHour"]),
        Some(src.join("lake/keys.rs"))
    );
}

#[test]
fn a_function_crate_is_a_handler_and_its_wiring() {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(repo().join("functions")).unwrap() {
        let dir = entry.unwrap().path();
        let crate_name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let files: Vec<String> = rust_files(&dir.join("src"))
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        if files != ["lib.rs", "main.rs"] {
            problems.push(format!(
                "{crate_name}: src holds {files:?}, not just lib.rs and main.rs"
            ));
        }
        let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
        let lines = main.lines().count();
        if !(10..=30).contains(&lines) {
            problems.push(format!("{crate_name}: main.rs is {lines} lines"));
        }
        for file in ["lib.rs", "main.rs"] {
            let text = std::fs::read_to_string(dir.join("src").join(file)).unwrap();
            if text.contains("event::kinesis") || text.contains("KinesisEvent ") {
                problems.push(format!(
                    "{crate_name}/src/{file} reads aws_lambda_events' Kinesis model"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
