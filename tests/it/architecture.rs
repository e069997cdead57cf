//! The structure `docs/architecture.md` promises, checked on the sources: no import against the
//! flow (the table "Who may import whom" is read from the document itself, so the two cannot
//! drift), no source file over [`MAX_FILE_LINES`] lines, no function over [`MAX_FN_LINES`], and
//! every repository path named in `README.md` and `docs/*.md` exists.
//!
//! The checks read code with comments and string literals blanked out ([`code_only`]), so a path
//! in a doc comment or a `"fn "` in a message counts for nothing. Each check is a function over
//! text, and the `*_self_check` tests feed it sources that must fail, so a check that stopped
//! seeing anything would fail too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The limits `docs/architecture.md` and the working rules state.
const MAX_FILE_LINES: usize = 500;
const MAX_FN_LINES: usize = 80;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    sources(&repo().join("src"), &mut files);
    files.sort();
    files
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

// ---------------------------------------------------------------------------------------------
// Reading Rust: comments and literals blanked, line structure kept.

/// `text` with every comment and the inside of every string and char literal replaced by spaces
/// (newlines kept, so line numbers stay right). Lifetimes (`'a`) are left alone.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && ident(b[i - 1]);
        // `b'x'` is a byte literal, `x'` (an identifier before the quote) is not a char literal.
        let byte_prefix = i > 0 && b[i - 1] == b'b' && (i < 2 || !ident(b[i - 2]));
        if b[i..].starts_with(b"//") {
            let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 1;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 1;
                }
                j += 1;
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(len) = raw_string_at(b, i, prev_ident) {
            blank(&mut out, i + 1, i + len - 1);
            i += len;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' && (!prev_ident || byte_prefix) {
            match char_literal_len(&text[i..]) {
                Some(len) => {
                    blank(&mut out, i + 1, i + len - 1);
                    i += len;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The length of a raw string literal (`r"..."`, `r#"..."#`, `br"..."`) starting at `i`.
fn raw_string_at(b: &[u8], i: usize, prev_ident: bool) -> Option<usize> {
    let start = match b[i] {
        b'r' if !prev_ident => i + 1,
        b'b' if !prev_ident && b.get(i + 1) == Some(&b'r') => i + 2,
        _ => return None,
    };
    let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
    if b.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
    let body = start + hashes + 1;
    let end = b[body..].windows(close.len()).position(|w| w == close.as_slice())?;
    Some(body + end + close.len() - i)
}

/// The byte length of a char literal at the start of `s` (`'x'`, `'\n'`, `'\u{1F600}'`), or
/// `None` for a lifetime or label.
fn char_literal_len(s: &str) -> Option<usize> {
    let rest = &s[1..];
    if let Some(esc) = rest.strip_prefix('\\') {
        let first = esc.chars().next()?;
        let close = esc[first.len_utf8()..].find('\'')?;
        return Some(1 + 1 + first.len_utf8() + close + 1);
    }
    let c = rest.chars().next()?;
    rest[c.len_utf8()..].starts_with('\'').then(|| 1 + c.len_utf8() + 1)
}

// ---------------------------------------------------------------------------------------------
// Lengths.

/// Every function body longer than `max` lines in `text`, as `(line of fn, lines)`. A function
/// runs from its `fn` line to the line of the brace that closes its body.
fn long_functions(text: &str, max: usize) -> Vec<(usize, usize)> {
    let code = code_only(text);
    let b = code.as_bytes();
    let line_at = |pos: usize| 1 + b[..pos].iter().filter(|&&c| c == b'\n').count();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(n) = code[i..].find("fn") {
        let at = i + n;
        i = at + 2;
        let word_start = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        let next = code[at + 2..].chars().next().unwrap_or(' ');
        let name = code[at + 2..].trim_start().chars().next().unwrap_or(' ');
        if !word_start || !next.is_whitespace() || !(name.is_alphabetic() || name == '_') {
            continue; // not the keyword, or a `fn(..)` pointer type
        }
        let Some(open) = body_start(b, at) else { continue };
        let Some(close) = matching_brace(b, open) else { continue };
        let lines = line_at(close) - line_at(at) + 1;
        if lines > max {
            found.push((line_at(at), lines));
        }
    }
    found
}

/// The `{` opening the body of the function whose `fn` is at `at`; `None` for a declaration
/// (`fn f();`). A `;` inside `[u8; 4]` or `(..)` does not end the signature.
fn body_start(b: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (j, &c) in b.iter().enumerate().skip(at) {
        match c {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'{' => return Some(j),
            b';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

fn matching_brace(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

#[test]
fn no_source_file_over_500_lines_and_no_function_over_80() {
    let mut bad = Vec::new();
    for f in src_files() {
        let text = read(&f);
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            bad.push(format!("{}: {lines} lines (at most {MAX_FILE_LINES})", rel(&f)));
        }
        for (line, n) in long_functions(&text, MAX_FN_LINES) {
            bad.push(format!("{}:{line}: a function of {n} lines (at most {MAX_FN_LINES})", rel(&f)));
        }
    }
    assert!(bad.is_empty(), "too long (docs/architecture.md):\n{}", bad.join("\n"));
}

#[test]
fn length_check_self_check() {
    let body = |n: usize| (0..n).map(|i| format!("    let _x{i} = {i};\n")).collect::<String>();
    // A one-line function before a long one must not hide it; braces in strings and comments,
    // `[u8; 4]` in a signature and a declaration without a body do not confuse the count.
    let text = format!(
        "impl T {{\n    fn tiny(&self) {{}}\n    fn decl(&self);\n    fn long(a: [u8; 4]) -> u8 {{\n        let s = \"{{\"; // }}\n        let c = '{{';\n        let q = (b'\"', '\\'', b\"}}\");\n{}    }}\n    fn short() {{\n{}    }}\n}}\n",
        body(80),
        body(10)
    );
    assert_eq!(long_functions(&text, MAX_FN_LINES), vec![(4, 85)], "{text}");
    assert!(long_functions(&text, 85).is_empty());
    let nested = format!("fn outer() {{\n    fn inner() {{\n{}    }}\n}}\n", body(79));
    assert_eq!(long_functions(&nested, MAX_FN_LINES), vec![(1, 83), (2, 81)]);
    let raw = format!("fn f() {{\n    let s = r#\"}}\"#;\n{}}}\n", body(78));
    assert_eq!(long_functions(&raw, MAX_FN_LINES), vec![(1, 81)]);
}

// ---------------------------------------------------------------------------------------------
// Imports.

/// The table "Who may import whom" of `docs/architecture.md`: the foundation modules and, per
/// module of the flow, the modules it may import besides the foundation.
struct Rules {
    foundation: BTreeSet<String>,
    flow: BTreeMap<String, BTreeSet<String>>,
}

impl Rules {
    fn from_doc(doc: &str) -> Rules {
        let section = doc.split("## Who may import whom").nth(1).expect("docs/architecture.md: no \"Who may import whom\"");
        let section = section.split("\n## ").next().unwrap();
        let ticked = |cell: &str| -> Vec<String> {
            let cell = without_parentheses(cell);
            cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
        };
        let (mut foundation, mut flow, mut order) = (BTreeSet::new(), BTreeMap::new(), Vec::<String>::new());
        for row in section.lines().filter(|l| l.starts_with('|')) {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() != 2 || cells[0] == "module" || cells[0].starts_with("---") {
                continue;
            }
            if cells[0].starts_with("foundation") {
                foundation.extend(ticked(cells[0]));
                continue;
            }
            let module = ticked(cells[0]).into_iter().next().unwrap_or_else(|| panic!("no `module` in row {row:?}"));
            let mut may: BTreeSet<String> = ticked(cells[1]).into_iter().collect();
            if cells[1].contains("everything above") {
                may.extend(order.iter().cloned());
            }
            order.push(module.clone());
            flow.insert(module, may);
        }
        assert!(!foundation.is_empty() && flow.len() > 3, "docs/architecture.md: the import table did not parse");
        Rules { foundation, flow }
    }

    fn known(&self, module: &str) -> bool {
        self.foundation.contains(module) || self.flow.contains_key(module)
    }

    fn may(&self, from: &str, to: &str) -> bool {
        from == to
            || self.foundation.contains(to)
            || self.flow.get(from).is_some_and(|m| m.contains(to))
    }
}

fn without_parentheses(s: &str) -> String {
    let mut depth = 0;
    s.chars()
        .filter(|&c| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

/// The top-level module a file belongs to (`src/stream/group.rs` -> `stream`) and how deep its own
/// module sits (`src/stream/mod.rs` is 1, `src/stream/group.rs` 2).
fn module_of(file: &Path) -> (String, usize) {
    let rel = file.strip_prefix(repo().join("src")).unwrap();
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let depth = parts.len() - usize::from(parts.last().is_some_and(|l| l == "mod.rs"));
    (parts[0].trim_end_matches(".rs").to_string(), depth)
}

/// The names re-exported at the crate root (`pub use bridge::{Bridge, ..}` in `src/lib.rs`),
/// each with the module it comes from, so `crate::Bridge` counts as an import of `bridge`.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let code = code_only(lib);
    let mut out = BTreeMap::new();
    for stmt in code.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else { continue };
        let path = path.trim().trim_start_matches("crate::").trim_start_matches("self::");
        let Some((module, rest)) = path.split_once("::") else { continue };
        for name in path_heads(rest.trim()) {
            out.insert(name, module.to_string());
        }
    }
    out
}

/// The first segment of each path in `a::b`, `{a, b::c, d as e}` or `*`.
fn path_heads(s: &str) -> Vec<String> {
    let s = s.trim();
    let ident = |t: &str| t.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let Some(inner) = s.strip_prefix('{') else { return vec![ident(s)] };
    let (mut depth, mut start, mut heads) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.push(ident(inner[start..i].trim()));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(ident(inner[start..i].trim()));
                start = i + 1;
            }
            _ => {}
        }
    }
    heads.retain(|h| !h.is_empty() && h != "self");
    heads
}

/// Every top-level module the code of one file in `module` refers to: `crate::x`, `crate::{x, y}`,
/// a re-export at the crate root, or `super::` chains that climb out to the crate root.
/// `depth` is how deep the file's module sits ([`module_of`]); inline `mod x { .. }` blocks are
/// counted too, so `super::super::` in a test module is seen for what it is.
fn imported_modules(text: &str, depth: usize, reexports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = code_only(text);
    let b = code.as_bytes();
    let inline = inline_mod_ranges(&code);
    let mut out = BTreeSet::new();
    let boundary = |i: usize| i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'$' || b[i - 1] == b':');
    let mut add = |rest: &str| {
        for h in path_heads(rest) {
            out.insert(reexports.get(&h).cloned().unwrap_or(h));
        }
    };
    for (i, _) in code.match_indices("crate::") {
        if boundary(i) {
            add(&code[i + 7..]);
        }
    }
    for (i, _) in code.match_indices("super::") {
        if !boundary(i) {
            continue;
        }
        let mut rest = &code[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r.trim_start();
        }
        let here = depth + inline.iter().filter(|(s, e)| (*s..*e).contains(&i)).count();
        if ups >= here {
            add(rest);
        }
    }
    out
}

/// The byte ranges of the bodies of inline `mod name { .. }` blocks.
fn inline_mod_ranges(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (i, _) in code.match_indices("mod ") {
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
            continue;
        }
        let after = code[i + 4..].trim_start();
        let name_len = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').count();
        if name_len == 0 || !after[name_len..].trim_start().starts_with('{') {
            continue;
        }
        let open = i + 4 + (code[i + 4..].len() - after.len()) + name_len + after[name_len..].find('{').unwrap();
        if let Some(close) = matching_brace(b, open) {
            out.push((open, close));
        }
    }
    out
}

/// The imports of `text` (a file of `module`, `depth` deep) that the rules forbid.
fn forbidden(rules: &Rules, module: &str, depth: usize, text: &str, reexports: &BTreeMap<String, String>) -> Vec<String> {
    imported_modules(text, depth, reexports)
        .into_iter()
        .filter(|to| !rules.may(module, to))
        .map(|to| if rules.known(&to) { format!("crate::{to}") } else { format!("crate::{to} (not a module in the table)") })
        .collect()
}

#[test]
fn no_module_imports_one_later_in_the_flow() {
    let rules = Rules::from_doc(&read(&repo().join("docs/architecture.md")));
    let reexports = root_reexports(&read(&repo().join("src/lib.rs")));
    let mut bad = BTreeSet::new();
    for f in src_files() {
        let (module, depth) = module_of(&f);
        if module == "lib" || module == "main" {
            continue; // the crate root and the binary may use everything
        }
        if !rules.known(&module) {
            bad.insert(format!("{}: module `{module}` is not in the table of docs/architecture.md", rel(&f)));
            continue;
        }
        for import in forbidden(&rules, &module, depth, &read(&f), &reexports) {
            bad.insert(format!("{} ({module}) imports {import}", rel(&f)));
        }
    }
    assert!(bad.is_empty(), "imports against the flow (docs/architecture.md):\n{}", bad.into_iter().collect::<Vec<_>>().join("\n"));
}

#[test]
fn import_check_self_check() {
    let rules = Rules::from_doc(&read(&repo().join("docs/architecture.md")));
    assert!(rules.may("export", "assemble") && !rules.may("assemble", "export"));
    assert!(rules.may("bridge", "tracers") && rules.may("demo", "bridge") && !rules.may("bridge", "demo"));
    assert!(rules.may("ingest", "config") && rules.may("config", "tracers") && !rules.may("tracers", "config"));
    assert!(rules.may("stream", "retry") && !rules.may("retry", "stream"));
    let reexports: BTreeMap<String, String> = [("Bridge".to_string(), "bridge".to_string())].into();
    let bad = |module: &str, depth: usize, text: &str| forbidden(&rules, module, depth, text, &reexports);
    assert_eq!(bad("assemble", 2, "use crate::export::Stage;"), ["crate::export"]);
    assert_eq!(bad("assemble", 2, "use crate::{clock, export::Stage};"), ["crate::export"]);
    assert_eq!(bad("tracers", 1, "fn f() -> crate::Bridge { todo!() }"), ["crate::bridge"]);
    assert_eq!(bad("enrich", 2, "use super::super::assemble::Run;"), ["crate::assemble"]);
    assert_eq!(bad("enrich", 1, "use crate::nowhere::X;"), ["crate::nowhere (not a module in the table)"]);
    // Allowed, or not code at all.
    assert!(bad("export", 2, "use crate::{assemble, stream::Entry};").is_empty());
    assert!(bad("enrich", 2, "//! see crate::export\nfn f() { let _ = \"crate::export\"; }").is_empty());
    assert!(bad("config", 2, "mod tests {\n    use super::super::{parse, validate};\n}").is_empty());
    assert!(bad("enrich", 2, "use super::snapshot::Fetch;").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Paths named in the documentation.

/// Repository paths named in markdown `text`: backticked spans and link targets that start with
/// one of `roots` and a `/` (e.g. `src/stream/mod.rs`, `scripts/test.sh`), without a trailing
/// `:line`, `#anchor` or punctuation. Spans with placeholders (`<..>`, `*`, `{..}`, `NAME`) are
/// not paths.
fn named_paths(text: &str, roots: &[String]) -> BTreeSet<String> {
    let mut spans: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
    spans.extend(text.split("](").skip(1).filter_map(|s| s.split(')').next()));
    let mut out = BTreeSet::new();
    for span in spans {
        for word in span.split_whitespace() {
            let w = word.trim_start_matches("./").trim_start_matches("../").split(['#', ':']).next().unwrap();
            let w = w.trim_end_matches(['.', ',', ';', ')', '"', '\'']);
            let Some((root, _)) = w.split_once('/') else { continue };
            if !roots.iter().any(|r| r == root) || w.contains(['<', '*', '{', '$']) || w.contains("NAME") {
                continue;
            }
            out.insert(w.to_string());
        }
    }
    out
}

#[test]
fn every_path_named_in_the_readme_and_docs_exists() {
    let roots: Vec<String> = std::fs::read_dir(repo())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') || n == ".ci")
        .filter(|n| n != "target")
        .collect();
    let mut docs = vec![repo().join("README.md")];
    for e in std::fs::read_dir(repo().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    docs.sort();
    let mut missing = Vec::new();
    for d in &docs {
        for p in named_paths(&read(d), &roots) {
            if !repo().join(&p).exists() {
                missing.push(format!("{}: {p}", rel(d)));
            }
        }
    }
    assert!(missing.is_empty(), "paths named in the documentation that do not exist:\n{}", missing.join("\n"));
}

#[test]
fn path_check_self_check() {
    let roots = ["src".to_string(), "scripts".to_string()];
    let text = "See `src/stream/mod.rs`, `src/pipeline.rs:12` and [the script](scripts/test.sh#usage); \
                `src/<module>.rs`, `docs/x.md` and `redis://host/0` are not checked.";
    let found: Vec<String> = named_paths(text, &roots).into_iter().collect();
    assert_eq!(found, ["scripts/test.sh", "src/pipeline.rs", "src/stream/mod.rs"]);
}

#[test]
fn the_document_states_the_limits_this_test_enforces() {
    let doc = read(&repo().join("docs/architecture.md"));
    let want = format!("no source file exceeds {MAX_FILE_LINES} lines and no function {MAX_FN_LINES} lines");
    assert!(doc.split_whitespace().collect::<Vec<_>>().join(" ").contains(&want), "docs/architecture.md must say: {want}");
}
