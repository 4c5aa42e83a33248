//! Mutation fuzzing of policy input on stable Rust: seeds from
//! `crates/core/fuzz-corpus/` (the shapes the tests use), mutated with
//! YAML-aware edits (tokens that broke parsers before: `0`, `.nan`, aliases,
//! duplicate lines, deep brackets, long values). Deterministic per seed, so a
//! failure names the seed and step that reproduce it. Used by the parser's
//! fuzz test (no panic, time and memory per input bounded by its size) and the
//! agent's (no partial import).

/// The seed corpus.
pub fn corpus() -> Vec<(&'static str, &'static str)> {
    vec![
        ("knp-ingress.yaml", include_str!("../../fuzz-corpus/knp-ingress.yaml")),
        ("cnp-l4.yaml", include_str!("../../fuzz-corpus/cnp-l4.yaml")),
        ("ccnp-specs.yaml", include_str!("../../fuzz-corpus/ccnp-specs.yaml")),
        ("list.json", include_str!("../../fuzz-corpus/list.json")),
        ("anchors.yaml", include_str!("../../fuzz-corpus/anchors.yaml")),
    ]
}

/// Tokens worth inserting: values Kubernetes rejects, YAML structure, aliases.
const TOKENS: &[&str] = &[
    "0",
    "\"0\"",
    "\"\"",
    ".nan",
    ".inf",
    "-.inf",
    "-1",
    "65536",
    "99999999999999999999",
    "\"+80\"",
    "1e3",
    "0x50",
    "080",
    "null",
    "~",
    "true",
    "[]",
    "{}",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ": ",
    "- ",
    "\n- ",
    "\n  ",
    "\t",
    "&a ",
    "*a",
    "&b [*a, *a]",
    "!!binary aGk=",
    "!tag ",
    "? ",
    "'",
    "\"",
    "#",
    "---\n",
    "...\n",
    "\\",
    "\u{0}",
    "\u{feff}",
    "é",
    "a b",
    "-http",
    "http-",
    "ht--tp",
    "010.0.0.0/8",
    "10.0.0.0/33",
    "::1/128",
    "k8s:",
    "reserved:",
    "io.kubernetes.pod.namespace",
    "<<: ",
    "%YAML 1.2\n",
];

/// xorshift64*: small, fast, and the same on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// A character boundary of `s` at or before `i`.
fn boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Apply 1..=4 random edits to `input` (kept under `max_len` bytes).
pub fn mutate(input: &str, seeds: &[(&str, &str)], rng: &mut Rng, max_len: usize) -> String {
    let mut s = input.to_string();
    for _ in 0..1 + rng.below(4) {
        let at = boundary(&s, rng.below(s.len() + 1));
        match rng.below(8) {
            // insert a token
            0 | 1 => s.insert_str(at, TOKENS[rng.below(TOKENS.len())]),
            // replace a word (scalar) with a token
            2 => {
                let end = boundary(&s, at + s[at..].find([' ', '\n', ',', '}', ']']).unwrap_or(s.len() - at));
                s.replace_range(at..end, TOKENS[rng.below(TOKENS.len())]);
            }
            // delete a range
            3 => {
                let end = boundary(&s, at + rng.below(40));
                s.replace_range(at..end, "");
            }
            // duplicate a line (duplicate keys, repeated list items)
            4 => {
                let lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                    v.insert(i, lines[i].to_string());
                    s = v.join("\n") + "\n";
                }
            }
            // splice a line from another seed
            5 => {
                let (_, other) = seeds[rng.below(seeds.len())];
                let lines: Vec<&str> = other.lines().collect();
                if !lines.is_empty() {
                    s.insert_str(at, &format!("{}\n", lines[rng.below(lines.len())]));
                }
            }
            // repeat a segment: size and nesting grow
            6 => {
                let end = boundary(&s, at + 1 + rng.below(16));
                let seg = s[at..end].to_string();
                let times = 1 + rng.below(64);
                s.insert_str(end, &seg.repeat(times));
            }
            // flip one byte to another ASCII byte
            _ => {
                if at < s.len() && s.as_bytes()[at].is_ascii() {
                    const BYTES: &[u8] = b" -:[]{},'\"&*!#\n0123456789abcxyz./";
                    let b = BYTES[rng.below(BYTES.len())] as char;
                    s.replace_range(at..at + 1, &b.to_string());
                }
            }
        }
        if s.len() > max_len {
            s.truncate(boundary(&s, max_len));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_deterministic_and_every_seed_parses() {
        let seeds = corpus();
        for (name, text) in &seeds {
            super::super::parse::parse_file(text).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        }
        let mut r = Rng::new(7);
        let a: Vec<String> = (0..50).map(|_| mutate(seeds[0].1, &seeds, &mut r, 4096)).collect();
        let mut r = Rng::new(7);
        let b: Vec<String> = (0..50).map(|_| mutate(seeds[0].1, &seeds, &mut r, 4096)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|m| m.len() <= 4096));
        assert!(a.iter().any(|m| m != seeds[0].1));
    }
}
