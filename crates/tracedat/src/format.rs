//! Event formats as the kernel describes them: `events/<sys>/<event>/format`,
//! `events/header_page` and `events/header_event`. Sans I/O: everything here parses text that
//! the caller read (from tracefs or from a trace.dat file).
//!
//! A [`Formats`] registry maps event ids to [`EventFormat`]s, which give typed access to the
//! fields of a raw record by name ([`EventFormat::u64`], [`EventFormat::i64`],
//! [`EventFormat::str`], [`EventFormat::bytes`]) and the symbolic names of its `print fmt`
//! ([`EventFormat::symbol`]), so that e.g. kvm_exit's exit reasons come from the running
//! kernel rather than from a built-in table.

use std::collections::HashMap;

use crate::error::TraceDatError;

/// What a field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// A plain integer of `size` bytes.
    Scalar,
    /// A fixed array `type name[len]` (`char name[16]` is a string).
    Array { len: usize, elem_size: usize },
    /// `__data_loc type[] name`: a u32 whose low 16 bits are the offset of the data in the
    /// record and the high 16 bits its length.
    DataLoc,
    /// `__rel_loc type[] name`: like [`FieldKind::DataLoc`] but the offset counts from the end
    /// of this field.
    RelLoc,
}

/// The integer of `size` bytes (1, 2, 4 or 8; `None` for any other) at `offset` of a record,
/// as u64, sign-extended first when `signed`. `None` when the record is too short.
#[inline]
pub(crate) fn integer(data: &[u8], offset: usize, size: usize, signed: bool) -> Option<u64> {
    let at = data.get(offset..)?;
    Some(match (size, signed) {
        (8, _) => u64::from_le_bytes(*at.first_chunk::<8>()?),
        (4, false) => u64::from(u32::from_le_bytes(*at.first_chunk::<4>()?)),
        (4, true) => i32::from_le_bytes(*at.first_chunk::<4>()?) as i64 as u64,
        (2, false) => u64::from(u16::from_le_bytes(*at.first_chunk::<2>()?)),
        (2, true) => i16::from_le_bytes(*at.first_chunk::<2>()?) as i64 as u64,
        (1, false) => u64::from(*at.first()?),
        (1, true) => *at.first()? as i8 as i64 as u64,
        _ => return None,
    })
}

/// One field of an event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C type as the kernel prints it (`unsigned int`, `__data_loc char[]`, `u8[15]`).
    pub type_name: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
    pub kind: FieldKind,
}

impl Field {
    /// True for `char` arrays and `__data_loc char[]` fields, which hold text.
    pub fn is_string(&self) -> bool {
        let t = self
            .type_name
            .trim_start_matches("__data_loc ")
            .trim_start_matches("__rel_loc ");
        let t = t.trim_start_matches("const ");
        t.starts_with("char") && !matches!(self.kind, FieldKind::Scalar)
    }

    /// The bytes of this field in `data` (for loc fields: the bytes they point to), or None
    /// when the record is too short.
    pub fn bytes<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        match self.kind {
            FieldKind::Scalar | FieldKind::Array { .. } => {
                data.get(self.offset..self.offset.checked_add(self.size)?)
            }
            FieldKind::DataLoc | FieldKind::RelLoc => {
                let raw = data.get(self.offset..self.offset + 4)?;
                let loc = u32::from_le_bytes(raw.try_into().ok()?);
                let mut start = (loc & 0xffff) as usize;
                let len = (loc >> 16) as usize;
                if self.kind == FieldKind::RelLoc {
                    start += self.offset + 4;
                }
                data.get(start..start.checked_add(len)?)
            }
        }
    }

    /// An integer field as u64 (sign-extended first when signed). None for arrays, loc fields,
    /// sizes other than 1/2/4/8, or a short record.
    pub fn u64(&self, data: &[u8]) -> Option<u64> {
        if self.kind != FieldKind::Scalar {
            return None;
        }
        integer(data, self.offset, self.size, self.signed)
    }

    /// An integer field as i64 (sign-extended when the kernel says it is signed).
    pub fn i64(&self, data: &[u8]) -> Option<i64> {
        self.u64(data).map(|v| v as i64)
    }

    /// A text field (char array or `__data_loc char[]`), up to its first NUL. None when the
    /// bytes are not UTF-8.
    pub fn str<'a>(&self, data: &'a [u8]) -> Option<&'a str> {
        let b = self.bytes(data)?;
        let end = memchr_nul(b);
        std::str::from_utf8(&b[..end]).ok()
    }
}

fn memchr_nul(b: &[u8]) -> usize {
    b.iter().position(|&c| c == 0).unwrap_or(b.len())
}

/// How a symbol table is chosen when a `print fmt` argument is `(REC->f == N) ? A : B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The field compared (`isa` for kvm_exit).
    pub field: String,
    /// The value it is compared with.
    pub value: i64,
    /// True when the table is used when the field equals the value (the `?` branch), false
    /// when it is used otherwise (the `:` branch).
    pub when_equal: bool,
}

/// One `__print_symbolic` or `__print_flags` table of a `print fmt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolTable {
    /// True for `__print_flags` (bits joined by `delimiter`), false for `__print_symbolic`.
    pub flags: bool,
    pub delimiter: String,
    /// The first field the value expression reads (`exit_reason`).
    pub field: Option<String>,
    /// The value expression as written (`REC->exit_reason & 0xffff`).
    pub expr: String,
    /// `C` in `REC->field & C`, applied to the field before lookup.
    pub mask: Option<u64>,
    /// When the table applies only under a `(REC->f == N) ? ... : ...` condition.
    pub guard: Option<Guard>,
    /// (value, name) in the kernel's order.
    pub entries: Vec<(i64, String)>,
}

impl SymbolTable {
    /// The name of `value` in a symbolic table (after the mask), or the flag names joined by
    /// the delimiter in a flags table (unknown bits are printed in hex, as the kernel does).
    pub fn lookup(&self, value: u64) -> Option<String> {
        let v = self.mask.map_or(value, |m| value & m);
        if !self.flags {
            return self
                .entries
                .iter()
                .find(|(k, _)| *k as u64 == v || (*k as i32 as u32 as u64 == v && *k < 0))
                .map(|(_, n)| n.clone());
        }
        let mut rest = v;
        let mut names = Vec::new();
        for (bit, name) in &self.entries {
            let bit = *bit as u64;
            if bit != 0 && rest & bit == bit {
                names.push(name.clone());
                rest &= !bit;
            }
        }
        if rest != 0 {
            names.push(format!("0x{rest:x}"));
        }
        Some(names.join(&self.delimiter))
    }

    fn applies(&self, fmt: &EventFormat, data: &[u8]) -> bool {
        match &self.guard {
            None => true,
            Some(g) => match fmt.i64(data, &g.field) {
                Some(v) => (v == g.value) == g.when_equal,
                None => false,
            },
        }
    }
}

/// The format of one trace event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    pub id: u16,
    pub system: String,
    pub name: String,
    /// Common fields first (`common_type`, `common_flags`, `common_preempt_count`,
    /// `common_pid`), then the event's own fields, in the kernel's order.
    pub fields: Vec<Field>,
    /// The `print fmt` line, after `print fmt: `.
    pub print_fmt: String,
    /// The symbol tables found in `print_fmt`.
    pub symbols: Vec<SymbolTable>,
    /// The `format` file text as read (written back verbatim into trace.dat files).
    pub text: String,
}

impl EventFormat {
    /// Parses an `events/<system>/<name>/format` file. `system` is taken from the caller
    /// (the file does not name it). `what` names the source in errors.
    pub fn parse(system: &str, text: &str, what: &str) -> Result<EventFormat, TraceDatError> {
        let err = |line: usize, message: String| TraceDatError::Format {
            what: what.to_string(),
            line,
            message,
        };
        let mut name = None;
        let mut id = None;
        let mut fields = Vec::new();
        let mut print_fmt = String::new();
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            let t = line.trim();
            if let Some(v) = t.strip_prefix("name:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = t.strip_prefix("ID:") {
                id = Some(
                    v.trim()
                        .parse::<u16>()
                        .map_err(|e| err(lineno, format!("bad ID {v:?}: {e}")))?,
                );
            } else if t.starts_with("field:") {
                fields.push(parse_field(t).map_err(|m| err(lineno, m))?);
            } else if let Some(v) = t.strip_prefix("print fmt:") {
                print_fmt = v.trim().to_string();
            }
        }
        let name = name.ok_or_else(|| err(1, "no `name:` line".into()))?;
        let id = id.ok_or_else(|| err(1, "no `ID:` line".into()))?;
        let symbols = parse_symbols(&print_fmt);
        Ok(EventFormat {
            id,
            system: system.to_string(),
            name,
            fields,
            print_fmt,
            symbols,
            text: text.to_string(),
        })
    }

    /// The fields the `print fmt` prints as kernel symbols (`%ps`, `%pS`, `%pB`, `%pF`,
    /// `%pf`: function pointers and return addresses), by index into [`EventFormat::fields`],
    /// in print order.
    pub fn symbol_pointers(&self) -> Vec<usize> {
        symbol_pointer_args(&self.print_fmt)
            .iter()
            .filter_map(|name| self.fields.iter().position(|f| &f.name == name))
            .collect()
    }

    /// `system:name`.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.system, self.name)
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Integer field `name` of a record's data, as u64.
    pub fn u64(&self, data: &[u8], name: &str) -> Option<u64> {
        self.field(name)?.u64(data)
    }

    /// Integer field `name` of a record's data, as i64 (sign-extended when signed).
    pub fn i64(&self, data: &[u8], name: &str) -> Option<i64> {
        self.field(name)?.i64(data)
    }

    /// Text field `name` of a record's data.
    pub fn str<'a>(&self, data: &'a [u8], name: &str) -> Option<&'a str> {
        self.field(name)?.str(data)
    }

    /// Raw bytes of field `name` (the pointed-to bytes for `__data_loc` fields).
    pub fn bytes<'a>(&self, data: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.field(name)?.bytes(data)
    }

    /// The symbolic name the kernel would print for field `name` of this record, taken from
    /// the `print fmt` tables (honouring guards such as kvm_exit's `isa == 1` for VMX vs SVM).
    /// None when no table covers the field or the value has no name.
    pub fn symbol(&self, data: &[u8], name: &str) -> Option<String> {
        let value = self.u64(data, name)?;
        self.symbols
            .iter()
            .filter(|t| t.field.as_deref() == Some(name) && t.applies(self, data))
            .find_map(|t| {
                if t.flags && t.mask.is_some() && value & t.mask.unwrap_or(0) == 0 {
                    return None;
                }
                t.lookup(value)
            })
    }
}

fn parse_field(line: &str) -> Result<Field, String> {
    // field:TYPE NAME[N];	offset:O;	size:S;	signed:G;
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for part in line.split(';') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("field:") {
            decl = Some(v.trim());
        } else if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse::<usize>().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse::<usize>().ok();
        } else if let Some(v) = part.strip_prefix("signed:") {
            signed = v.trim() == "1";
        }
    }
    let decl = decl.ok_or("no field declaration")?;
    let offset = offset.ok_or("no valid offset")?;
    let size = size.ok_or("no valid size")?;
    // The name is the last identifier, before an optional [N].
    let (head, array) = match decl.rfind('[') {
        Some(open) if decl.ends_with(']') => (
            decl[..open].trim_end(),
            Some(&decl[open + 1..decl.len() - 1]),
        ),
        _ => (decl, None),
    };
    let split = head
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(0, |(p, c)| p + c.len_utf8());
    let name = head[split..].to_string();
    if name.is_empty() {
        return Err(format!("no field name in {decl:?}"));
    }
    let base_type = head[..split].trim().to_string();
    let is_loc = base_type.starts_with("__data_loc") || base_type.starts_with("__rel_loc");
    let kind = if base_type.starts_with("__data_loc") {
        FieldKind::DataLoc
    } else if base_type.starts_with("__rel_loc") {
        FieldKind::RelLoc
    } else if let Some(n) = array {
        match n.trim().parse::<usize>() {
            Ok(len) if len > 0 => FieldKind::Array {
                len,
                elem_size: size / len,
            },
            // `[]` or a symbolic length: treat the whole size as bytes.
            _ => FieldKind::Array {
                len: size,
                elem_size: 1,
            },
        }
    } else {
        FieldKind::Scalar
    };
    let type_name = match (array, is_loc) {
        (Some(n), _) => format!("{base_type}[{n}]"),
        (None, _) => base_type,
    };
    Ok(Field {
        name,
        type_name,
        offset,
        size,
        signed,
        kind,
    })
}

// ---- print fmt ---------------------------------------------------------------------------

/// The characters of `s` outside string literals and outside any `()`, `{}` or `[]`
/// nesting, with their byte offsets (quotes and brackets themselves are not yielded).
fn top_level(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut esc = false;
    s.char_indices().filter(move |&(_, c)| {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            return false;
        }
        match c {
            '"' => in_str = true,
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            _ => return depth == 0,
        }
        false
    })
}

/// Splits `s` at top-level commas (outside parentheses, braces, brackets and strings).
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in top_level(s) {
        if c == ',' {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// The index just past the parenthesis that closes the one at `open`.
fn matching_paren(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s[open..].char_indices() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Concatenates adjacent C string literals (`"KVM_EXIT_" "IO"`), or None if `s` is not only
/// string literals.
fn string_literal(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s.trim();
    if !rest.starts_with('"') {
        return None;
    }
    while let Some(r) = rest.strip_prefix('"') {
        let mut esc = false;
        let mut end = None;
        for (i, c) in r.char_indices() {
            match (esc, c) {
                (true, c) => {
                    out.push(match c {
                        'n' => '\n',
                        't' => '\t',
                        c => c,
                    });
                    esc = false;
                }
                (false, '\\') => esc = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => out.push(c),
            }
        }
        rest = r[end? + 1..].trim_start();
    }
    rest.is_empty().then_some(out)
}

fn first_rec_field(expr: &str) -> Option<String> {
    let p = expr.find("REC->")?;
    let name: String = expr[p + 5..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The symbol tables of a `print fmt`.
pub fn parse_symbols(print_fmt: &str) -> Vec<SymbolTable> {
    // Skip the format string itself.
    let args_start = string_end(print_fmt).unwrap_or(0);
    let args = &print_fmt[args_start..];
    let mut tables = Vec::new();
    for arg in split_top(args) {
        for (kw, flags) in [("__print_symbolic(", false), ("__print_flags(", true)] {
            let mut from = 0;
            while let Some(p) = arg[from..].find(kw) {
                let start = from + p;
                let open = start + kw.len() - 1;
                let Some(close) = matching_paren(arg, open) else {
                    break;
                };
                from = close;
                if let Some(mut t) = parse_table(&arg[open + 1..close - 1], flags) {
                    t.guard = guard_of(arg, start);
                    tables.push(t);
                }
            }
        }
    }
    tables
}

/// The `REC->field` names of the arguments a `print fmt` prints with a symbol conversion
/// (`%ps`, `%pS`, `%pSR`, `%pB`, `%pF`, `%pf`). Arguments that are not a plain field
/// (possibly cast) are left out.
pub fn symbol_pointer_args(print_fmt: &str) -> Vec<String> {
    let Some(end) = string_end(print_fmt) else {
        return Vec::new();
    };
    let fmt = &print_fmt[..end];
    let args = split_top(print_fmt[end..].trim_start().trim_start_matches(','));
    let b = fmt.as_bytes();
    let mut out = Vec::new();
    let mut arg = 0usize;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        if b.get(i) == Some(&b'%') {
            i += 1;
            continue;
        }
        // flags, width (a `*` takes an argument), precision, length
        while let Some(&c) = b.get(i) {
            match c {
                b'*' => arg += 1,
                b'-'
                | b'+'
                | b' '
                | b'#'
                | b'0'..=b'9'
                | b'.'
                | b'l'
                | b'h'
                | b'z'
                | b'j'
                | b't'
                | b'L'
                | b'q' => {}
                _ => break,
            }
            i += 1;
        }
        let conv = b.get(i).copied();
        i += 1;
        if conv == Some(b'p') && matches!(b.get(i), Some(b's' | b'S' | b'B' | b'F' | b'f')) {
            if let Some(name) = args.get(arg).and_then(|a| plain_rec_field(a)) {
                out.push(name);
            }
        }
        arg += 1;
    }
    out
}

/// `REC->name`, `(void *)REC->name` or `(unsigned long) REC->name`: the field's name.
fn plain_rec_field(arg: &str) -> Option<String> {
    let mut a = arg.trim();
    while let Some(rest) = a.strip_prefix('(') {
        let close = rest.find(')')?;
        a = rest[close + 1..].trim();
    }
    let name = a.strip_prefix("REC->")?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| name.to_string())
}

fn string_end(s: &str) -> Option<usize> {
    let s0 = s.find('"')?;
    let mut esc = false;
    for (i, c) in s[s0 + 1..].char_indices() {
        match (esc, c) {
            (true, _) => esc = false,
            (false, '\\') => esc = true,
            (false, '"') => return Some(s0 + 1 + i + 1),
            _ => {}
        }
    }
    None
}

fn parse_table(inner: &str, flags: bool) -> Option<SymbolTable> {
    let parts = split_top(inner);
    let expr = parts.first()?.trim().to_string();
    let (delimiter, entries_from) = if flags {
        (string_literal(parts.get(1)?)?, 2)
    } else {
        (String::new(), 1)
    };
    let mut entries = Vec::new();
    for e in &parts[entries_from..] {
        let e = e.trim();
        let Some(body) = e.strip_prefix('{').and_then(|b| b.strip_suffix('}')) else {
            continue;
        };
        let kv = split_top(body);
        if kv.len() != 2 {
            continue;
        }
        let (Some(v), Some(name)) = (eval_const(kv[0]), string_literal(kv[1])) else {
            continue;
        };
        entries.push((v, name));
    }
    let field = first_rec_field(&expr);
    let mask = expr
        .split_once('&')
        .filter(|(l, _)| l.trim().starts_with("REC->") && !l.contains('('))
        .and_then(|(_, r)| eval_const(r))
        .map(|m| m as u64);
    Some(SymbolTable {
        flags,
        delimiter,
        field,
        expr,
        mask,
        guard: None,
        entries,
    })
}

/// `(REC->f == N) ? A : B`: which branch the table at `pos` of `arg` is in.
fn guard_of(arg: &str, pos: usize) -> Option<Guard> {
    let (q, colon) = top_ternary(arg)?;
    let cond = arg[..q].trim();
    let cond = cond
        .strip_prefix('(')
        .and_then(|c| c.strip_suffix(')'))
        .unwrap_or(cond);
    let (l, r) = cond.split_once("==")?;
    let field = l.trim().strip_prefix("REC->")?;
    if !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let value = eval_const(r)?;
    let when_equal = if pos > q && pos < colon {
        true
    } else if pos > colon {
        false
    } else {
        return None;
    };
    Some(Guard {
        field: field.to_string(),
        value,
        when_equal,
    })
}

/// Positions of the top-level `?` and its `:` in `s`.
fn top_ternary(s: &str) -> Option<(usize, usize)> {
    let mut q = None;
    let mut nested = 0;
    for (i, c) in top_level(s) {
        match c {
            '?' => {
                if q.is_none() {
                    q = Some(i);
                } else {
                    nested += 1;
                }
            }
            ':' if q.is_some() => {
                if nested == 0 {
                    return Some((q?, i));
                }
                nested -= 1;
            }
            _ => {}
        }
    }
    None
}

/// Evaluates an integer constant expression of a print fmt: decimal/hex literals (with
/// U/L suffixes), parentheses, unary `-` `~`, and binary `* + - << >> & ^ |`.
pub fn eval_const(s: &str) -> Option<i64> {
    let toks = tokenize(s)?;
    let mut p = Parser { toks, pos: 0 };
    let v = p.expr(0)?;
    (p.pos == p.toks.len()).then_some(v)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(i64),
    Op(&'static str),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            let (radix, digits_from) = if c == b'0' && i + 1 < b.len() && (b[i + 1] | 0x20) == b'x'
            {
                (16, i + 2)
            } else {
                (10, i)
            };
            i = digits_from;
            while i < b.len() && (b[i] as char).is_digit(radix) {
                i += 1;
            }
            let digits = &s[digits_from..i];
            while i < b.len() && matches!(b[i] | 0x20, b'u' | b'l') {
                i += 1;
            }
            if digits.is_empty() && radix == 16 {
                return None;
            }
            let _ = start;
            let v = u64::from_str_radix(digits, radix).ok()?;
            out.push(Tok::Num(v as i64));
        } else {
            let two = s.get(i..i + 2);
            let op = match two {
                Some("<<") => "<<",
                Some(">>") => ">>",
                _ => match c {
                    b'(' => "(",
                    b')' => ")",
                    b'+' => "+",
                    b'-' => "-",
                    b'*' => "*",
                    b'|' => "|",
                    b'&' => "&",
                    b'^' => "^",
                    b'~' => "~",
                    _ => return None,
                },
            };
            i += op.len();
            out.push(Tok::Op(op));
        }
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn prec(op: &str) -> Option<u8> {
        Some(match op {
            "|" => 1,
            "^" => 2,
            "&" => 3,
            "<<" | ">>" => 4,
            "+" | "-" => 5,
            "*" => 6,
            _ => return None,
        })
    }

    fn expr(&mut self, min: u8) -> Option<i64> {
        let mut lhs = self.unary()?;
        while let Some(Tok::Op(op)) = self.toks.get(self.pos).cloned() {
            let Some(p) = Self::prec(op) else { break };
            if p < min {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(p + 1)?;
            lhs = match op {
                "|" => lhs | rhs,
                "^" => lhs ^ rhs,
                "&" => lhs & rhs,
                "<<" => lhs.checked_shl(u32::try_from(rhs).ok()?)?,
                ">>" => lhs.checked_shr(u32::try_from(rhs).ok()?)?,
                "+" => lhs.wrapping_add(rhs),
                "-" => lhs.wrapping_sub(rhs),
                "*" => lhs.wrapping_mul(rhs),
                _ => return None,
            };
        }
        Some(lhs)
    }

    fn unary(&mut self) -> Option<i64> {
        let t = self.toks.get(self.pos).cloned()?;
        self.pos += 1;
        match t {
            Tok::Num(v) => Some(v),
            Tok::Op("-") => self.unary().map(i64::wrapping_neg),
            Tok::Op("~") => self.unary().map(|v| !v),
            Tok::Op("(") => {
                let v = self.expr(0)?;
                (self.toks.get(self.pos) == Some(&Tok::Op(")"))).then_some(())?;
                self.pos += 1;
                Some(v)
            }
            _ => None,
        }
    }
}

// ---- header_page / header_event ----------------------------------------------------------

/// Where the parts of a ring-buffer page are, from `events/header_page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    pub timestamp_offset: usize,
    pub commit_offset: usize,
    /// 8 on 64-bit kernels, 4 on 32-bit ones.
    pub commit_size: usize,
    pub data_offset: usize,
    /// Size of the data area: the page (sub-buffer) size is `data_offset + data_size`.
    pub data_size: usize,
}

impl PageLayout {
    /// The layout of a 64-bit kernel with 4 KiB sub-buffers.
    pub const DEFAULT_64: PageLayout = PageLayout {
        timestamp_offset: 0,
        commit_offset: 8,
        commit_size: 8,
        data_offset: 16,
        data_size: 4080,
    };

    /// The largest page (sub-buffer) a layout may describe: the kernel's sub-buffers are at
    /// most a few MiB (`buffer_subbuf_size_kb`).
    pub const MAX_PAGE_SIZE: usize = 64 << 20;

    /// The size of one page (sub-buffer) as read from `trace_pipe_raw`.
    pub fn page_size(&self) -> usize {
        self.data_offset + self.data_size
    }

    /// Parses `events/header_page`.
    pub fn parse(text: &str, what: &str) -> Result<PageLayout, TraceDatError> {
        let mut l = PageLayout::DEFAULT_64;
        let (mut ts, mut commit, mut data) = (false, false, false);
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if !t.starts_with("field:") {
                continue;
            }
            let f = parse_field(t).map_err(|message| TraceDatError::Format {
                what: what.to_string(),
                line: i + 1,
                message,
            })?;
            match f.name.as_str() {
                "timestamp" => {
                    l.timestamp_offset = f.offset;
                    ts = true;
                }
                "commit" => {
                    l.commit_offset = f.offset;
                    l.commit_size = f.size;
                    commit = true;
                }
                "data" => {
                    l.data_offset = f.offset;
                    l.data_size = f.size;
                    data = true;
                }
                _ => {}
            }
        }
        if !(ts && commit && data) {
            return Err(TraceDatError::Format {
                what: what.to_string(),
                line: 1,
                message: "expected fields timestamp, commit and data".into(),
            });
        }
        // Offsets and sizes come from a file (trace.dat carries its header_page): bounded, so
        // that page_size() cannot overflow and a page buffer is never sized by a wild number.
        let in_page = |v: usize| v <= PageLayout::MAX_PAGE_SIZE;
        if !matches!(l.commit_size, 4 | 8)
            || ![
                l.timestamp_offset,
                l.commit_offset,
                l.data_offset,
                l.data_size,
            ]
            .into_iter()
            .all(in_page)
            || !in_page(l.data_offset + l.data_size)
            || l.data_offset < l.commit_offset + l.commit_size
        {
            return Err(TraceDatError::Format {
                what: what.to_string(),
                line: 1,
                message: format!("unsupported page header layout {l:?}"),
            });
        }
        Ok(l)
    }
}

/// Checks that `events/header_event` describes the record header this decoder knows
/// (type_len 5 bits, time_delta 27 bits; padding 29, time_extend 30, time_stamp 31).
pub fn check_header_event(text: &str, what: &str) -> Result<(), TraceDatError> {
    let squeeze: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "type_len : 5 bits",
        "time_delta : 27 bits",
        "padding : type == 29",
        "time_extend : type == 30",
        "type == 31",
        "data max type_len == 28",
    ] {
        if !squeeze.contains(needle) {
            return Err(TraceDatError::Format {
                what: what.to_string(),
                line: 1,
                message: format!("record header layout differs: expected `{needle}`"),
            });
        }
    }
    Ok(())
}

// ---- registry ----------------------------------------------------------------------------

/// All known event formats, by id and by `system:name`.
#[derive(Debug, Clone, Default)]
pub struct Formats {
    by_id: HashMap<u16, EventFormat>,
    by_name: HashMap<(String, String), u16>,
}

impl Formats {
    pub fn new() -> Formats {
        Formats::default()
    }

    pub fn insert(&mut self, f: EventFormat) {
        self.by_name
            .insert((f.system.clone(), f.name.clone()), f.id);
        self.by_id.insert(f.id, f);
    }

    pub fn get(&self, id: u16) -> Option<&EventFormat> {
        self.by_id.get(&id)
    }

    pub fn by_name(&self, system: &str, name: &str) -> Option<&EventFormat> {
        self.by_id
            .get(self.by_name.get(&(system.to_string(), name.to_string()))?)
    }

    /// All formats, sorted by system then name.
    pub fn iter(&self) -> impl Iterator<Item = &EventFormat> {
        let mut v: Vec<&EventFormat> = self.by_id.values().collect();
        v.sort_by(|a, b| (&a.system, &a.name).cmp(&(&b.system, &b.name)));
        v.into_iter()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The format of a record.
    pub fn of(&self, rec: &crate::ringbuf::Record<'_>) -> Option<&EventFormat> {
        self.get(rec.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KVM_PIO: &str = "name: kvm_pio
ID: 110
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned int rw;\toffset:8;\tsize:4;\tsigned:0;
\tfield:unsigned int port;\toffset:12;\tsize:4;\tsigned:0;
\tfield:unsigned int size;\toffset:16;\tsize:4;\tsigned:0;
\tfield:unsigned int count;\toffset:20;\tsize:4;\tsigned:0;
\tfield:unsigned int val;\toffset:24;\tsize:4;\tsigned:0;

print fmt: \"pio_%s at 0x%x size %d count %d val 0x%x %s\", REC->rw ? \"write\" : \"read\", REC->port, REC->size, REC->count, REC->val, REC->count > 1 ? \"(...)\" : \"\"
";

    #[test]
    fn parses_fields_and_reads_values() {
        let f = EventFormat::parse("kvm", KVM_PIO, "test").unwrap();
        assert_eq!(f.id, 110);
        assert_eq!(f.name, "kvm_pio");
        assert_eq!(f.fields.len(), 9);
        let mut data = vec![0u8; 28];
        data[4..8].copy_from_slice(&(-5i32).to_le_bytes());
        data[12..16].copy_from_slice(&0x3f8u32.to_le_bytes());
        assert_eq!(f.u64(&data, "port"), Some(0x3f8));
        assert_eq!(f.i64(&data, "common_pid"), Some(-5));
        assert_eq!(f.u64(&data, "nope"), None);
        assert_eq!(f.u64(&data[..10], "port"), None);
    }

    #[test]
    fn data_loc_and_arrays() {
        let text = "name: x\nID: 7\nformat:\n\tfield:__data_loc char[] msg;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;\n\tfield:__u8 insn[15];\toffset:28;\tsize:15;\tsigned:0;\n\nprint fmt: \"%s\", __get_str(msg)\n";
        let f = EventFormat::parse("s", text, "t").unwrap();
        assert_eq!(f.field("msg").unwrap().kind, FieldKind::DataLoc);
        assert_eq!(
            f.field("insn").unwrap().kind,
            FieldKind::Array {
                len: 15,
                elem_size: 1
            }
        );
        let mut data = vec![0u8; 48];
        let loc: u32 = (5 << 16) | 43;
        data[8..12].copy_from_slice(&loc.to_le_bytes());
        data[43..48].copy_from_slice(b"hello");
        data[12..16].copy_from_slice(b"qemu");
        assert_eq!(f.str(&data, "msg"), Some("hello"));
        assert_eq!(f.str(&data, "comm"), Some("qemu"));
        assert!(f.field("comm").unwrap().is_string());
        assert_eq!(f.bytes(&data, "insn").unwrap().len(), 15);
        // A loc pointing past the end is None, not a panic.
        data[8..12].copy_from_slice(&((100u32 << 16) | 40).to_le_bytes());
        assert_eq!(f.str(&data, "msg"), None);
    }

    #[test]
    fn const_expressions() {
        assert_eq!(eval_const("0x040 + 13"), Some(77));
        assert_eq!(eval_const("(1 << 0) | (1 << 3)"), Some(9));
        assert_eq!(eval_const("-1"), Some(-1));
        assert_eq!(eval_const("0x80000001"), Some(0x80000001));
        assert_eq!(eval_const("10UL"), Some(10));
        assert_eq!(eval_const("REC->x"), None);
        assert_eq!(eval_const("(1"), None);
    }

    #[test]
    fn symbol_pointer_fields_of_timer_csd_and_ipi_events() {
        assert_eq!(
            symbol_pointer_args(
                r#""hrtimer=%p function=%ps expires=%llu softexpires=%llu mode=%s", REC->hrtimer, REC->function, (unsigned long long) REC->expires, (unsigned long long) REC->softexpires, __print_symbolic(REC->mode, { 0, "ABS" })"#
            ),
            ["function"]
        );
        assert_eq!(
            symbol_pointer_args(
                r#""cpu=%u callsite=%pS func=%ps csd=%p", REC->cpu, REC->callsite, REC->func, REC->csd"#
            ),
            ["callsite", "func"]
        );
        assert_eq!(
            symbol_pointer_args(
                r#""cpumask=%s callsite=%pS callback=%pS", __get_cpumask(cpumask), REC->callsite, REC->callback"#
            ),
            ["callsite", "callback"]
        );
        assert_eq!(
            symbol_pointer_args(r#""%*s 100%% %pS", 3, "x", (void *)REC->ip"#),
            ["ip"]
        );
        assert!(symbol_pointer_args(r#""x=%u", REC->x"#).is_empty());
        assert!(symbol_pointer_args("garbage \"").is_empty());
    }

    #[test]
    fn kvm_exit_symbols_follow_isa() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kvm_exit.format"
        ))
        .unwrap();
        let f = EventFormat::parse("kvm", &text, "kvm_exit").unwrap();
        let tables: Vec<_> = f
            .symbols
            .iter()
            .filter(|t| t.field.as_deref() == Some("exit_reason"))
            .collect();
        assert_eq!(tables.len(), 3, "{tables:#?}");
        let mut data = vec![0u8; 72];
        let set = |data: &mut Vec<u8>, reason: u32, isa: u32| {
            data[8..12].copy_from_slice(&reason.to_le_bytes());
            data[24..28].copy_from_slice(&isa.to_le_bytes());
        };
        set(&mut data, 30, 1); // VMX
        assert_eq!(
            f.symbol(&data, "exit_reason").as_deref(),
            Some("IO_INSTRUCTION")
        );
        set(&mut data, 0x7b, 2); // SVM
        assert_eq!(f.symbol(&data, "exit_reason").as_deref(), Some("io"));
        set(&mut data, 0x4d, 2);
        assert_eq!(f.symbol(&data, "exit_reason").as_deref(), Some("GP excp"));
        set(&mut data, 0x8000_0021, 1); // failed VM entry, INVALID_STATE
        assert_eq!(
            f.symbol(&data, "exit_reason").as_deref(),
            Some("INVALID_STATE")
        );
    }

    #[test]
    fn userspace_exit_names_concatenate_literals() {
        let pf = r#""reason %s (%d)", REC->errno < 0 ? (REC->errno == -4 ? "restart" : "error") : __print_symbolic(REC->reason, { 0, "KVM_EXIT_" "UNKNOWN" }, { 2, "KVM_EXIT_" "IO" }), REC->errno < 0 ? -REC->errno : REC->reason"#;
        let t = parse_symbols(pf);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].lookup(2).as_deref(), Some("KVM_EXIT_IO"));
        assert_eq!(t[0].field.as_deref(), Some("reason"));
        assert!(t[0].guard.is_none());
    }

    #[test]
    fn flags_tables() {
        let pf = r#""%s", __print_flags(REC->f, "|", { 0x1, "A" }, { 0x4, "C" })"#;
        let t = &parse_symbols(pf)[0];
        assert!(t.flags);
        assert_eq!(t.lookup(5).as_deref(), Some("A|C"));
        assert_eq!(t.lookup(7).as_deref(), Some("A|C|0x2"));
    }

    #[test]
    fn header_page_layout() {
        let text = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";
        assert_eq!(
            PageLayout::parse(text, "t").unwrap(),
            PageLayout::DEFAULT_64
        );
        assert_eq!(PageLayout::DEFAULT_64.page_size(), 4096);
    }
}
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn format_parser_never_panics(text in "(name: [a-z_]{0,8}\n)?(ID: [0-9]{0,6}\n)?(\tfield:[ -~]{0,40};\toffset:[0-9]{0,3};\tsize:[0-9]{0,3};\tsigned:[01];\n){0,4}(print fmt: [ -~]{0,120})?", data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(f) = EventFormat::parse("s", &text, "fuzz") {
                for field in &f.fields {
                    let _ = field.u64(&data);
                    let _ = field.str(&data);
                    let _ = f.symbol(&data, &field.name);
                }
            }
            let _ = PageLayout::parse(&text, "fuzz");
            let _ = parse_symbols(&text);
        }

        #[test]
        fn print_fmt_parser_never_panics(pf in "\"[ -~]{0,10}\"(, (__print_symbolic|__print_flags|REC->|\\(|\\)|\\{|\\}|,|\"|[ -~]){0,40})?") {
            let _ = parse_symbols(&pf);
        }
    }
}
