//! Korean wording of commands, with particles chosen by the final consonant.
//!
//! A particle depends on whether the word before it ends in a consonant
//! (받침): 컵**을** but 큐브**를**, 공**이** but 큐브**가**, 왼쪽**으로** but 위**로**
//! (a word ending in ㄹ also takes 로). 에 never changes. Sentences end in the
//! plain or intimate imperative (집어라, 집어, 집어 줘), as people give commands
//! to a robot.

use super::grammar::Direction;
use super::object::{Color, Shape};
use super::refer::{Reference, Relation};
use rand::Rng;

/// Whether the last syllable of `word` has a final consonant (받침).
/// Words that do not end in a Hangul syllable count as vowel-final.
pub fn has_final_consonant(word: &str) -> bool {
    final_index(word).is_some_and(|f| f != 0)
}

/// 을 after a consonant, 를 after a vowel: the object particle.
pub fn object_particle(word: &str) -> &'static str {
    if has_final_consonant(word) {
        "을"
    } else {
        "를"
    }
}

/// 이 after a consonant, 가 after a vowel: the subject particle.
pub fn subject_particle(word: &str) -> &'static str {
    if has_final_consonant(word) {
        "이"
    } else {
        "가"
    }
}

/// 으로 after a consonant other than ㄹ, else 로: the direction particle.
pub fn direction_particle(word: &str) -> &'static str {
    const RIEUL: u32 = 8;
    match final_index(word) {
        Some(f) if f != 0 && f != RIEUL => "으로",
        _ => "로",
    }
}

/// Index of the final consonant of the last syllable (0 = none), if it is Hangul.
fn final_index(word: &str) -> Option<u32> {
    let c = word.chars().last()? as u32;
    (0xAC00..=0xD7A3).contains(&c).then(|| (c - 0xAC00) % 28)
}

/// Ways to say each colour before a noun.
pub fn color_words(color: Color) -> &'static [&'static str] {
    match color {
        Color::Red => &["빨간", "빨간색"],
        Color::Green => &["초록", "초록색"],
        Color::Blue => &["파란", "파란색"],
        Color::Yellow => &["노란", "노란색"],
        Color::Purple => &["보라색", "보라"],
        Color::Orange => &["주황색", "주황"],
        Color::White => &["흰", "흰색"],
        Color::Grey => &["회색"],
        Color::Black => &["검은", "검은색"],
    }
}

/// Ways to name each shape.
pub fn shape_words(shape: Shape) -> &'static [&'static str] {
    match shape {
        Shape::Cup => &["컵"],
        Shape::Block => &["블록", "큐브"],
        Shape::Ball => &["공"],
        Shape::Bowl => &["그릇"],
    }
}

fn pick<'a>(rng: &mut impl Rng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

/// A noun phrase for `reference`, wording chosen at random: "빨간 컵", "큐브".
pub fn noun(reference: Reference, rng: &mut impl Rng) -> String {
    let shape = pick(rng, shape_words(reference.shape()));
    match reference.color() {
        None => shape.to_string(),
        Some(c) => format!("{} {shape}", pick(rng, color_words(c))),
    }
}

const PICK_VERBS: [&str; 7] = [
    "집어라",
    "집어",
    "집어 줘",
    "잡아",
    "잡아라",
    "들어 올려",
    "들어 올려라",
];

/// "빨간 컵을 집어라"
pub fn pick_command(obj: &str, rng: &mut impl Rng) -> String {
    format!("{obj}{} {}", object_particle(obj), pick(rng, &PICK_VERBS))
}

/// "빨간 블록을 파란 그릇에 넣어"
pub fn place_command(obj: &str, bowl: &str, rng: &mut impl Rng) -> String {
    match rng.random_range(0..10) {
        0 => format!("{obj}{} {bowl}에 들어가게 해", subject_particle(obj)),
        1 | 2 => format!(
            "{obj}{} {bowl} 안에 {}",
            object_particle(obj),
            pick(rng, &["넣어", "넣어 줘", "놓아"])
        ),
        _ => {
            let verb = pick(
                rng,
                &["넣어", "넣어라", "넣어 줘", "놓아", "놓아라", "담아"],
            );
            format!("{obj}{} {bowl}에 {verb}", object_particle(obj))
        }
    }
}

/// "초록 공을 왼쪽으로 밀어"
pub fn push_command(obj: &str, direction: Direction, rng: &mut impl Rng) -> String {
    let word = pick(rng, direction_words(direction));
    let towards = format!("{word}{}", direction_particle(word));
    if rng.random_range(0..8) == 0 {
        return format!("{obj}{} {towards} 가도록 밀어", subject_particle(obj));
    }
    let verb = pick(rng, &["밀어", "밀어라", "밀어 줘", "밀어 봐"]);
    format!("{obj}{} {towards} {verb}", object_particle(obj))
}

/// "파란 컵 옆에 있는 빨간 블록을 집어"
pub fn relational_command(
    target: &str,
    relation: Relation,
    landmark: &str,
    rng: &mut impl Rng,
) -> String {
    let place = pick(rng, relation_words(relation));
    let link = if rng.random_range(0..4) == 0 {
        "의"
    } else {
        "에 있는"
    };
    format!("{landmark} {place}{link} {}", pick_command(target, rng))
}

/// Direction words, before 으로/로.
pub fn direction_words(direction: Direction) -> &'static [&'static str] {
    match direction {
        Direction::Left => &["왼쪽"],
        Direction::Right => &["오른쪽"],
        Direction::Up => &["위", "위쪽"],
        Direction::Down => &["아래", "아래쪽"],
    }
}

/// Place words for relations, before 에 있는 / 의.
pub fn relation_words(relation: Relation) -> &'static [&'static str] {
    match relation {
        Relation::NextTo => &["옆"],
        Relation::LeftOf => &["왼쪽"],
        Relation::RightOf => &["오른쪽"],
        Relation::Above => &["위", "위쪽"],
        Relation::Below => &["아래", "아래쪽"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn particles_follow_the_final_consonant() {
        // 컵 (ㅂ), 블록 (ㄱ), 공 (ㅇ), 그릇 (ㅅ) end in consonants; 큐브, 사과 in vowels.
        for w in ["컵", "블록", "공", "그릇", "빨간 컵"] {
            assert!(has_final_consonant(w), "{w}");
            assert_eq!(object_particle(w), "을");
            assert_eq!(subject_particle(w), "이");
        }
        for w in ["큐브", "사과", "보라"] {
            assert!(!has_final_consonant(w), "{w}");
            assert_eq!(object_particle(w), "를");
            assert_eq!(subject_particle(w), "가");
        }
        assert_eq!(direction_particle("왼쪽"), "으로");
        assert_eq!(direction_particle("오른쪽"), "으로");
        assert_eq!(direction_particle("위"), "로");
        assert_eq!(direction_particle("아래"), "로");
        assert_eq!(direction_particle("길"), "로"); // ㄹ takes 로
        assert_eq!(object_particle("cup"), "를"); // not Hangul: vowel rule
    }

    #[test]
    fn commands_read_naturally() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        for _ in 0..50 {
            let s = pick_command("큐브", &mut rng);
            assert!(s.starts_with("큐브를 "), "{s}");
            let s = push_command("빨간 컵", Direction::Left, &mut rng);
            assert!(s.contains("왼쪽으로") && s.contains("밀어"), "{s}");
            let s = relational_command("빨간 블록", Relation::NextTo, "파란 컵", &mut rng);
            assert!(
                s.starts_with("파란 컵 옆") && s.contains("빨간 블록을 "),
                "{s}"
            );
        }
    }
}
