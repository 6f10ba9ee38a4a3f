//! Tag expressions: a boolean formula over resource tags that selects resources, such as
//! `linux && (x86 || arm) && !flaky`.
//!
//! ```text
//! or    := and ("||" and)*           lowest precedence
//! and   := unary ("&&" unary)*
//! unary := "!" unary | "(" or ")" | TAG
//! TAG   := [A-Za-z0-9_.:/@+-]+        case-sensitive
//! ```
//!
//! Whitespace between tokens is ignored. Only the symbols are operators: `and`, `or` and
//! `not` are ordinary tags. A descriptor tag with other characters (a space, a non-ASCII
//! letter) cannot be named in an expression.
//!
//! Parsing is bounded by [`MAX_EXPR_BYTES`] and [`MAX_EXPR_DEPTH`], so hostile input gets
//! an error, never a stack overflow. The parser reads tokens lazily, so the error it
//! reports is always the leftmost problem in the input.

use std::fmt;
use std::str::FromStr;

/// Longest expression accepted, in bytes of UTF-8.
pub const MAX_EXPR_BYTES: usize = 1024;

/// Deepest nesting accepted. Each `(` and each `!` opens one level, so `!(a || b)` is two
/// levels deep. This bounds recursion in the parser and in every walk over the result.
pub const MAX_EXPR_DEPTH: usize = 32;

/// A boolean expression over tags, evaluated against one resource's tags.
///
/// [`Expr::parse`] returns a canonical form: `And` and `Or` hold at least two operands,
/// and an operand is never of its parent's kind (`a && (b && c)` is `And[a, b, c]`).
/// Hand-built values need not be canonical. They still evaluate and display correctly,
/// but only canonical values survive a trip through [`Display`](fmt::Display) and back
/// unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// True when the resource carries this tag.
    Tag(String),
    Not(Box<Expr>),
    /// True when every operand is. `And([])` is true.
    And(Vec<Expr>),
    /// True when any operand is. `Or([])` is false.
    Or(Vec<Expr>),
}

/// Why an expression did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid expression at position {position}: {message}")]
pub struct ExprError {
    /// 0-based offset, in chars (not bytes), of the offending token. When the input ends
    /// too early, this is the input's length in chars.
    pub position: usize,
    /// What was expected and what was found, worded so the caller can fix the input.
    pub message: String,
}

impl Expr {
    /// Parses `input` with the grammar in the [module docs](self).
    ///
    /// # Errors
    /// Anything outside the grammar: an empty input, a missing operand, a single `&` or
    /// `|`, a character that is neither an operator nor part of a tag, unbalanced
    /// parentheses, trailing input. Also input over [`MAX_EXPR_BYTES`] or nested deeper
    /// than [`MAX_EXPR_DEPTH`].
    pub fn parse(input: &str) -> Result<Expr, ExprError> {
        if input.len() > MAX_EXPR_BYTES {
            let within = input
                .char_indices()
                .take_while(|(at, c)| at + c.len_utf8() <= MAX_EXPR_BYTES)
                .count();
            return Err(error(
                within,
                format!(
                    "the expression is {} bytes, over the limit of {MAX_EXPR_BYTES} bytes",
                    input.len()
                ),
            ));
        }
        let mut parser = Parser {
            chars: input.chars().collect(),
            next: 0,
            peeked: None,
        };
        if input.trim().is_empty() {
            return Err(error(
                parser.chars.len(),
                "the expression is empty; expected a tag, \"!\" or \"(\"",
            ));
        }
        let expr = parser.or(0)?;
        match parser.take()? {
            (_, Token::End) => Ok(expr),
            (at, Token::Close) => Err(error(at, "\")\" has no matching \"(\"")),
            (at, found) => Err(error(
                at,
                format!(
                    "expected \"&&\", \"||\" or the end but found {}",
                    found.describe()
                ),
            )),
        }
    }

    /// A plain tag list as an expression: every tag required. This is what the 1.0 tag
    /// criterion means, so one tag gives `Tag`, several give `And`, as [`Expr::parse`]
    /// would for `a && b`.
    ///
    /// `all_of(&[])` is `And([])`, which matches every resource and has no text form.
    pub fn all_of(tags: &[String]) -> Expr {
        match tags {
            [tag] => Expr::Tag(tag.clone()),
            _ => Expr::And(tags.iter().cloned().map(Expr::Tag).collect()),
        }
    }

    /// Whether a resource whose tags are described by `has_tag` satisfies the expression.
    /// `&&` and `||` short-circuit from left to right.
    pub fn matches(&self, has_tag: impl Fn(&str) -> bool) -> bool {
        self.eval(&has_tag)
    }

    fn eval(&self, has_tag: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Expr::Tag(tag) => has_tag(tag),
            Expr::Not(inner) => !inner.eval(has_tag),
            Expr::And(operands) => operands.iter().all(|e| e.eval(has_tag)),
            Expr::Or(operands) => operands.iter().any(|e| e.eval(has_tag)),
        }
    }

    /// Tags every match must carry: the positive tags of the top-level conjunction,
    /// deduplicated, in order of first appearance.
    ///
    /// The broker can narrow its candidates to the resources carrying these tags (via its
    /// tag index) instead of scanning every resource. It must still call
    /// [`Expr::matches`] on each candidate. Empty when no tag is required at the top
    /// level, as in `!flaky` or `a || b`, in which case every resource is a candidate.
    /// The list may be incomplete (`(a && b) || (a && c)` gives none), never wrong.
    pub fn required_tags(&self) -> Vec<&str> {
        let mut tags = Vec::new();
        self.collect_required(&mut tags);
        tags
    }

    fn collect_required<'a>(&'a self, tags: &mut Vec<&'a str>) {
        match self {
            Expr::Tag(tag) => {
                if !tags.contains(&tag.as_str()) {
                    tags.push(tag);
                }
            }
            Expr::And(operands) => operands.iter().for_each(|e| e.collect_required(tags)),
            Expr::Or(operands) if operands.len() == 1 => operands[0].collect_required(tags),
            Expr::Not(_) | Expr::Or(_) => {}
        }
    }

    /// How tightly the displayed form binds: an operand is parenthesised when it binds
    /// less tightly than its position requires. A one-operand list displays as its operand.
    fn binding(&self) -> Binding {
        match self {
            Expr::And(operands) | Expr::Or(operands) if operands.len() == 1 => {
                operands[0].binding()
            }
            Expr::Or(_) => Binding::Or,
            Expr::And(_) => Binding::And,
            Expr::Tag(_) | Expr::Not(_) => Binding::Unary,
        }
    }

    fn fmt_operand(&self, f: &mut fmt::Formatter<'_>, position: Binding) -> fmt::Result {
        if self.binding() < position {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

/// The canonical text: ` && ` and ` || ` between operands, `!` directly before its
/// operand, parentheses only where precedence needs them. For a canonical [`Expr`],
/// `Expr::parse(&e.to_string()) == Ok(e)`. `And([])` and `Or([])` display as nothing.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (operands, separator, position) = match self {
            Expr::Tag(tag) => return f.write_str(tag),
            Expr::And(operands) | Expr::Or(operands) if operands.len() == 1 => {
                return operands[0].fmt(f);
            }
            Expr::Not(inner) => {
                f.write_str("!")?;
                return inner.fmt_operand(f, Binding::Unary);
            }
            Expr::And(operands) => (operands, " && ", Binding::And),
            Expr::Or(operands) => (operands, " || ", Binding::Or),
        };
        for (i, operand) in operands.iter().enumerate() {
            if i > 0 {
                f.write_str(separator)?;
            }
            operand.fmt_operand(f, position)?;
        }
        Ok(())
    }
}

impl FromStr for Expr {
    type Err = ExprError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expr::parse(s)
    }
}

/// Precedence levels, loosest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Binding {
    Or,
    And,
    Unary,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Tag(String),
    And,
    Or,
    Not,
    Open,
    Close,
    End,
}

impl Token {
    /// The token as an error message names it.
    fn describe(&self) -> String {
        match self {
            Token::Tag(tag) => format!("tag \"{tag}\""),
            Token::And => "\"&&\"".to_owned(),
            Token::Or => "\"||\"".to_owned(),
            Token::Not => "\"!\"".to_owned(),
            Token::Open => "\"(\"".to_owned(),
            Token::Close => "\")\"".to_owned(),
            Token::End => "the end".to_owned(),
        }
    }
}

fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '@' | '+' | '-')
}

fn error(position: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        position,
        message: message.into(),
    }
}

/// A recursive-descent parser over a lazy token stream with one token of lookahead.
/// Positions are char indices into `chars`.
struct Parser {
    chars: Vec<char>,
    /// Index of the first char not yet tokenised.
    next: usize,
    peeked: Option<(usize, Token)>,
}

impl Parser {
    /// `or := and ("||" and)*`, with nested `Or`s flattened. `depth` counts the `(` and
    /// `!` enclosing this point.
    fn or(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let mut operands = Vec::new();
        loop {
            match self.and(depth)? {
                Expr::Or(inner) => operands.extend(inner),
                operand => operands.push(operand),
            }
            if self.peek()? != &Token::Or {
                return Ok(collect(operands, Expr::Or));
            }
            self.take()?;
        }
    }

    /// `and := unary ("&&" unary)*`, with nested `And`s flattened.
    fn and(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let mut operands = Vec::new();
        loop {
            match self.unary(depth)? {
                Expr::And(inner) => operands.extend(inner),
                operand => operands.push(operand),
            }
            if self.peek()? != &Token::And {
                return Ok(collect(operands, Expr::And));
            }
            self.take()?;
        }
    }

    /// `unary := "!" unary | "(" or ")" | TAG`
    fn unary(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let (position, token) = self.take()?;
        match token {
            Token::Tag(tag) => Ok(Expr::Tag(tag)),
            Token::Not | Token::Open if depth >= MAX_EXPR_DEPTH => Err(error(
                position,
                format!(
                    "nesting is deeper than {MAX_EXPR_DEPTH} levels (each \"(\" and \"!\" opens one)"
                ),
            )),
            Token::Not => Ok(Expr::Not(Box::new(self.unary(depth + 1)?))),
            Token::Open => {
                let inner = self.or(depth + 1)?;
                match self.take()? {
                    (_, Token::Close) => Ok(inner),
                    (at, Token::End) => Err(error(
                        at,
                        format!("unclosed \"(\" opened at position {position}"),
                    )),
                    (at, found) => Err(error(
                        at,
                        format!(
                            "expected \"&&\", \"||\" or \")\" but found {}",
                            found.describe()
                        ),
                    )),
                }
            }
            found => Err(error(
                position,
                format!(
                    "expected a tag, \"!\" or \"(\" but found {}",
                    found.describe()
                ),
            )),
        }
    }

    fn peek(&mut self) -> Result<&Token, ExprError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lex()?,
        };
        Ok(&self.peeked.insert(token).1)
    }

    fn take(&mut self) -> Result<(usize, Token), ExprError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lex(),
        }
    }

    /// Reads the next token and its position; `End` (repeatedly) once the input is spent.
    fn lex(&mut self) -> Result<(usize, Token), ExprError> {
        while self.chars.get(self.next).is_some_and(|c| c.is_whitespace()) {
            self.next += 1;
        }
        let start = self.next;
        let Some(&c) = self.chars.get(start) else {
            return Ok((start, Token::End));
        };
        self.next += 1;
        let token = match c {
            '(' => Token::Open,
            ')' => Token::Close,
            '!' => Token::Not,
            '&' | '|' if self.chars.get(self.next) == Some(&c) => {
                self.next += 1;
                if c == '&' { Token::And } else { Token::Or }
            }
            '&' | '|' => {
                return Err(error(
                    start,
                    format!("\"{c}\" is not an operator; use \"{c}{c}\""),
                ));
            }
            ',' => {
                return Err(error(
                    start,
                    "\",\" is not an operator; use \"&&\" to require every tag",
                ));
            }
            c if is_tag_char(c) => {
                while self.chars.get(self.next).is_some_and(|&c| is_tag_char(c)) {
                    self.next += 1;
                }
                Token::Tag(self.chars[start..self.next].iter().collect())
            }
            c => {
                return Err(error(
                    start,
                    format!(
                        "unexpected character \"{}\"; a tag may contain only ASCII letters, \
                         digits and _ . : / @ + -",
                        c.escape_debug()
                    ),
                ));
            }
        };
        Ok((start, token))
    }
}

/// One operand stands for itself; several make a list of the given kind.
fn collect(mut operands: Vec<Expr>, list: fn(Vec<Expr>) -> Expr) -> Expr {
    if operands.len() == 1 {
        operands.pop().expect("checked: exactly one operand")
    } else {
        list(operands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Expr {
        Expr::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn tag(name: &str) -> Expr {
        Expr::Tag(name.to_owned())
    }

    fn not(e: Expr) -> Expr {
        Expr::Not(Box::new(e))
    }

    fn and<const N: usize>(operands: [Expr; N]) -> Expr {
        Expr::And(operands.into())
    }

    fn or<const N: usize>(operands: [Expr; N]) -> Expr {
        Expr::Or(operands.into())
    }

    fn has<'a>(tags: &'a [&'a str]) -> impl Fn(&str) -> bool + 'a {
        move |t| tags.contains(&t)
    }

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            parse("a || b && c"),
            or([tag("a"), and([tag("b"), tag("c")])])
        );
        assert_eq!(
            parse("a && b || c"),
            or([and([tag("a"), tag("b")]), tag("c")])
        );
        assert_eq!(
            parse("a && b || c && d"),
            or([and([tag("a"), tag("b")]), and([tag("c"), tag("d")])])
        );
    }

    #[test]
    fn not_binds_to_the_nearest_operand_only() {
        assert_eq!(parse("!a && b"), and([not(tag("a")), tag("b")]));
        assert_eq!(parse("a || !b"), or([tag("a"), not(tag("b"))]));
        assert_eq!(parse("!(a && b)"), not(and([tag("a"), tag("b")])));
        assert_eq!(parse("!!a"), not(not(tag("a"))));
        assert_eq!(parse("! a"), not(tag("a")));
    }

    #[test]
    fn parentheses_override_precedence_and_vanish_when_redundant() {
        assert_eq!(
            parse("(a || b) && c"),
            and([or([tag("a"), tag("b")]), tag("c")])
        );
        assert_eq!(
            parse("linux && (x86 || arm) && !flaky"),
            and([
                tag("linux"),
                or([tag("x86"), tag("arm")]),
                not(tag("flaky"))
            ])
        );
        assert_eq!(parse("((a))"), tag("a"));
        assert_eq!(parse("(a) && (b)"), and([tag("a"), tag("b")]));
    }

    #[test]
    fn nested_lists_of_the_same_kind_are_flattened() {
        let abc = and([tag("a"), tag("b"), tag("c")]);
        assert_eq!(parse("a && (b && c)"), abc);
        assert_eq!(parse("(a && b) && c"), abc);
        assert_eq!(parse("((a && b)) && (c)"), abc);
        assert_eq!(
            parse("a || (b || c) || d"),
            or([tag("a"), tag("b"), tag("c"), tag("d")])
        );
        // A different kind, or a negation, is an operand of its own.
        assert_eq!(
            parse("a && (b || c && d)"),
            and([tag("a"), or([tag("b"), and([tag("c"), tag("d")])])])
        );
        assert_eq!(
            parse("!(a && b) && c"),
            and([not(and([tag("a"), tag("b")])), tag("c")])
        );
    }

    #[test]
    fn tags_take_every_allowed_character_and_keep_their_case() {
        let input =
            "board && arm64 && x86_64 && rack-2 && team/qa && v1.2 && user@lab && c++ && ns:x";
        let Expr::And(operands) = parse(input) else {
            panic!("expected a conjunction");
        };
        let names: Vec<String> = operands.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "board", "arm64", "x86_64", "rack-2", "team/qa", "v1.2", "user@lab", "c++", "ns:x"
            ]
        );
        assert_ne!(parse("Linux"), parse("linux"));
        assert!(!parse("Linux").matches(has(&["linux"])));
    }

    #[test]
    fn words_are_tags_not_operators() {
        assert_eq!(parse("and"), tag("and"));
        assert_eq!(parse("not && or"), and([tag("not"), tag("or")]));
    }

    #[test]
    fn whitespace_between_tokens_is_ignored() {
        assert_eq!(parse("  a&&b||!c\t"), parse("a && b || !c"));
        assert_eq!(parse("\n( a )\n"), tag("a"));
        assert_eq!(parse("a\u{3000}&&\u{3000}b"), parse("a && b"));
    }

    #[test]
    fn evaluation_follows_the_boolean_truth_tables() {
        type Truth = fn(bool, bool, bool) -> bool;
        let cases: [(&str, Truth); 9] = [
            ("a", |a, _, _| a),
            ("!a", |a, _, _| !a),
            ("a && b", |a, b, _| a && b),
            ("a || b", |a, b, _| a || b),
            ("a && !b", |a, b, _| a && !b),
            ("a || b && c", |a, b, c| a || (b && c)),
            ("(a || b) && c", |a, b, c| (a || b) && c),
            ("!(a && b) || c", |a, b, c| !(a && b) || c),
            ("!!a && !(b || c)", |a, b, c| a && !(b || c)),
        ];
        for (input, truth) in cases {
            let expr = parse(input);
            for bits in 0..8u8 {
                let (a, b, c) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                let tags: Vec<&str> = [("a", a), ("b", b), ("c", c)]
                    .into_iter()
                    .filter_map(|(t, on)| on.then_some(t))
                    .collect();
                assert_eq!(
                    expr.matches(has(&tags)),
                    truth(a, b, c),
                    "{input} with tags {tags:?}"
                );
            }
        }
    }

    #[test]
    fn evaluation_selects_resources_by_their_tags() {
        let expr = parse("linux && (x86 || arm) && !flaky");
        assert!(expr.matches(has(&["linux", "x86"])));
        assert!(expr.matches(has(&["arm", "linux", "board"])));
        assert!(!expr.matches(has(&["linux", "x86", "flaky"])));
        assert!(!expr.matches(has(&["linux", "riscv"])));
        assert!(!expr.matches(has(&["x86"])));
    }

    #[test]
    fn empty_lists_are_the_boolean_identities() {
        assert!(Expr::And(vec![]).matches(|_| false));
        assert!(!Expr::Or(vec![]).matches(|_| true));
    }

    #[test]
    fn required_tags_are_the_positive_tags_of_the_top_level_conjunction() {
        let cases: [(&str, &[&str]); 11] = [
            ("a", &["a"]),
            ("a && b", &["a", "b"]),
            ("b && a && b", &["b", "a"]),
            ("a && b && !c", &["a", "b"]),
            ("linux && (x86 || arm) && !flaky", &["linux"]),
            ("(a && b) && c", &["a", "b", "c"]),
            ("!flaky", &[]),
            ("a || b", &[]),
            ("a && b || c", &[]),
            ("(a && b) || (a && c)", &[]),
            ("!(a || b)", &[]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).required_tags(), expected, "{input}");
        }
    }

    #[test]
    fn required_tags_look_through_hand_built_nesting() {
        let expr = and([
            tag("a"),
            and([tag("b"), or([tag("c")])]),
            or([tag("d"), tag("e")]),
        ]);
        assert_eq!(expr.required_tags(), ["a", "b", "c"]);
    }

    #[test]
    fn all_of_is_the_conjunction_of_a_tag_list() {
        assert_eq!(Expr::all_of(&strings(&["board"])), parse("board"));
        assert_eq!(
            Expr::all_of(&strings(&["board", "arm64", "rack-2"])),
            parse("board && arm64 && rack-2")
        );
        let expr = Expr::all_of(&strings(&["a", "b"]));
        assert!(expr.matches(has(&["a", "b", "c"])));
        assert!(!expr.matches(has(&["a"])));
        assert_eq!(expr.required_tags(), ["a", "b"]);
    }

    #[test]
    fn all_of_nothing_matches_every_resource_and_requires_no_tag() {
        let expr = Expr::all_of(&[]);
        assert!(expr.matches(|_| false));
        assert!(expr.required_tags().is_empty());
    }

    #[test]
    fn display_is_canonical_and_parses_back_to_the_same_expression() {
        let cases = [
            ("a", "a"),
            ("a&&b", "a && b"),
            ("a||b&&c", "a || b && c"),
            ("(a||b)&&c", "(a || b) && c"),
            ("a && (b || c) && d", "a && (b || c) && d"),
            ("(a && b) || c", "a && b || c"),
            ("a && (b && c)", "a && b && c"),
            ("a || (b || c)", "a || b || c"),
            ("((a))", "a"),
            ("!(a)", "!a"),
            ("!!a", "!!a"),
            ("!(a || b)", "!(a || b)"),
            ("!(a && b) || !c", "!(a && b) || !c"),
            ("!(!a && b)", "!(!a && b)"),
            (
                "linux&&(x86||arm)&&!flaky",
                "linux && (x86 || arm) && !flaky",
            ),
            (
                "(a || b) && (c || !(d && e))",
                "(a || b) && (c || !(d && e))",
            ),
            ("team/qa && v1.2 && user@lab", "team/qa && v1.2 && user@lab"),
        ];
        for (input, canonical) in cases {
            let expr = parse(input);
            assert_eq!(expr.to_string(), canonical, "{input}");
            assert_eq!(parse(canonical), expr, "{input}");
        }
    }

    #[test]
    fn display_keeps_the_meaning_of_hand_built_expressions() {
        // One-operand lists display as their operand, so the parentheses stay where needed.
        let expr = and([tag("x"), and([or([tag("a"), tag("b")])])]);
        assert_eq!(expr.to_string(), "x && (a || b)");
        let expr = not(or([and([tag("a"), tag("b")])]));
        assert_eq!(expr.to_string(), "!(a && b)");
        assert_eq!(not(and([tag("a")])).to_string(), "!a");
    }

    #[test]
    fn from_str_parses() {
        assert_eq!("a && b".parse::<Expr>(), Ok(and([tag("a"), tag("b")])));
        assert!("a &".parse::<Expr>().is_err());
    }

    #[test]
    fn error_names_the_position_and_says_what_was_expected() {
        let too_long = "a".repeat(MAX_EXPR_BYTES + 1);
        let too_long_multibyte = format!("{}é", "a".repeat(MAX_EXPR_BYTES - 1));
        let parens = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        let too_deep_parens = parens(MAX_EXPR_DEPTH + 1);
        let too_deep_nots = format!("{}a", "!".repeat(MAX_EXPR_DEPTH + 1));
        let too_deep_mixed = format!("{}a{}", "!(".repeat(17), ")".repeat(17));
        let cases: Vec<(&str, usize, &str)> = vec![
            // empty
            ("", 0, "the expression is empty"),
            ("  \t", 3, "the expression is empty"),
            // missing operand
            (
                "a &&",
                4,
                "expected a tag, \"!\" or \"(\" but found the end",
            ),
            (
                "a || ",
                5,
                "expected a tag, \"!\" or \"(\" but found the end",
            ),
            ("&& a", 0, "expected a tag, \"!\" or \"(\" but found \"&&\""),
            (
                "a || || b",
                5,
                "expected a tag, \"!\" or \"(\" but found \"||\"",
            ),
            (
                "a && || b",
                5,
                "expected a tag, \"!\" or \"(\" but found \"||\"",
            ),
            ("!", 1, "expected a tag, \"!\" or \"(\" but found the end"),
            ("()", 1, "expected a tag, \"!\" or \"(\" but found \")\""),
            (
                "a && ()",
                6,
                "expected a tag, \"!\" or \"(\" but found \")\"",
            ),
            // trailing input
            (
                "a b",
                2,
                "expected \"&&\", \"||\" or the end but found tag \"b\"",
            ),
            (
                "a (b)",
                2,
                "expected \"&&\", \"||\" or the end but found \"(\"",
            ),
            (
                "a !b",
                2,
                "expected \"&&\", \"||\" or the end but found \"!\"",
            ),
            (
                "and or not",
                4,
                "expected \"&&\", \"||\" or the end but found tag \"or\"",
            ),
            // unbalanced parentheses
            ("a)", 1, "\")\" has no matching \"(\""),
            ("(a))", 3, "\")\" has no matching \"(\""),
            ("(a", 2, "unclosed \"(\" opened at position 0"),
            ("x && (a || (b)", 14, "unclosed \"(\" opened at position 5"),
            (
                "(a b)",
                3,
                "expected \"&&\", \"||\" or \")\" but found tag \"b\"",
            ),
            (
                "(a !b)",
                3,
                "expected \"&&\", \"||\" or \")\" but found \"!\"",
            ),
            // single & or |
            ("a & b", 2, "\"&\" is not an operator; use \"&&\""),
            ("a | b", 2, "\"|\" is not an operator; use \"||\""),
            ("a &&& b", 4, "\"&\" is not an operator; use \"&&\""),
            ("a&", 1, "\"&\" is not an operator; use \"&&\""),
            // other characters
            ("a,b", 1, "\",\" is not an operator; use \"&&\""),
            ("a == b", 2, "unexpected character \"=\""),
            (
                "café",
                3,
                "unexpected character \"é\"; a tag may contain only",
            ),
            (
                "a\u{3000}b",
                2,
                "expected \"&&\", \"||\" or the end but found tag \"b\"",
            ),
            ("a && \u{200b}b", 5, "unexpected character \"\\u{200b}\""),
            ("\"a\"", 0, "unexpected character \"\\\"\""),
            // an error deep inside reports its own position, not the parser's entry point
            ("a && (b || (c && $))", 17, "unexpected character \"$\""),
            // limits
            (
                &too_long,
                MAX_EXPR_BYTES,
                "is 1025 bytes, over the limit of 1024 bytes",
            ),
            (
                &too_long_multibyte,
                MAX_EXPR_BYTES - 1,
                "is 1025 bytes, over the limit",
            ),
            (
                &too_deep_parens,
                MAX_EXPR_DEPTH,
                "nesting is deeper than 32 levels",
            ),
            (
                &too_deep_nots,
                MAX_EXPR_DEPTH,
                "nesting is deeper than 32 levels",
            ),
            (
                &too_deep_mixed,
                MAX_EXPR_DEPTH,
                "nesting is deeper than 32 levels",
            ),
        ];
        for (input, position, fragment) in cases {
            let err = Expr::parse(input).expect_err(input);
            assert_eq!(err.position, position, "{input:?}: {err}");
            assert!(
                err.message.contains(fragment),
                "{input:?}: {:?} does not contain {fragment:?}",
                err.message
            );
        }
    }

    #[test]
    fn the_largest_and_deepest_inputs_within_the_limits_parse() {
        assert_eq!(
            Expr::parse(&"a".repeat(MAX_EXPR_BYTES)),
            Ok(tag(&"a".repeat(MAX_EXPR_BYTES)))
        );
        let deep = format!(
            "{}a{}",
            "(".repeat(MAX_EXPR_DEPTH),
            ")".repeat(MAX_EXPR_DEPTH)
        );
        assert_eq!(parse(&deep), tag("a"));
        let mut nots = parse(&format!("{}a", "!".repeat(MAX_EXPR_DEPTH)));
        for _ in 0..MAX_EXPR_DEPTH {
            let Expr::Not(inner) = nots else {
                panic!("expected a negation");
            };
            nots = *inner;
        }
        assert_eq!(nots, tag("a"));
        // Long flat lists are not nesting.
        let wide = vec!["t"; 200].join(" && ");
        assert_eq!(parse(&wide).required_tags(), ["t"]);
    }

    #[test]
    fn hostile_input_is_refused_without_overflowing_the_stack() {
        for input in ["(".repeat(100_000), "!".repeat(100_000)] {
            assert!(Expr::parse(&input).is_err());
            assert!(Expr::parse(&input[..MAX_EXPR_BYTES]).is_err());
        }
    }

    #[test]
    fn error_display_leads_with_the_position() {
        let err = Expr::parse("a & b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid expression at position 2: \"&\" is not an operator; use \"&&\""
        );
    }
}
