//! The grading conversation a judge model is sent, and how its verdict is read.
//!
//! One format for the gateway's judge (which writes the request and reads the verdict) and the
//! simulated provider's judge model (which reads the request and answers from real labels), so
//! the two cannot drift apart.
//!
//! The request: a system prompt stating the task and the one-word reply expected, and a user turn
//! holding the question and the answer between `[Question]` and `[Answer]` markers. The verdict:
//! the reply's first word, `CORRECT` or `INCORRECT` (case and punctuation ignored); anything
//! else (a refusal, `UNSURE`, an essay) is no verdict, never a guess.

/// The judge's instructions.
pub const JUDGE_SYSTEM_PROMPT: &str = "You grade answers given by an AI assistant. Read the \
question and the assistant's answer. Reply with exactly one word: CORRECT if the answer is \
correct and complete, INCORRECT if it is wrong, incomplete or cut off, UNSURE if you cannot tell.";

const QUESTION_MARK: &str = "[Question]\n";
const ANSWER_MARK: &str = "\n\n[Answer]\n";

/// The user turn of a grading request.
pub fn grading_prompt(question: &str, answer: &str) -> String {
    format!("{QUESTION_MARK}{question}{ANSWER_MARK}{answer}")
}

/// The question and answer of a grading prompt made by [`grading_prompt`]; `None` for any
/// other text. The answer is what follows the last answer marker, so a question that quotes
/// the marker still splits where the gateway put it.
pub fn split_grading_prompt(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(QUESTION_MARK)?;
    let at = rest.rfind(ANSWER_MARK)?;
    Some((&rest[..at], &rest[at + ANSWER_MARK.len()..]))
}

/// The verdict in a judge's reply: `Some(true)` for CORRECT, `Some(false)` for INCORRECT,
/// `None` for anything else.
pub fn parse_verdict(reply: &str) -> Option<bool> {
    let word: String = reply
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphabetic())
        .flat_map(char::to_uppercase)
        .collect();
    match word.as_str() {
        "CORRECT" => Some(true),
        "INCORRECT" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grading_prompt_splits_back_into_its_parts() {
        let prompt = grading_prompt("What is 2+2?\n\n[Answer]\nquoted", "It is 4.");
        assert_eq!(
            split_grading_prompt(&prompt),
            Some(("What is 2+2?\n\n[Answer]\nquoted", "It is 4."))
        );
        assert_eq!(split_grading_prompt("What is 2+2?"), None);
    }

    #[test]
    fn verdicts_are_read_from_the_first_word_only() {
        assert_eq!(parse_verdict("CORRECT"), Some(true));
        assert_eq!(parse_verdict("  correct."), Some(true));
        assert_eq!(parse_verdict("Incorrect: the sum is 5"), Some(false));
        assert_eq!(parse_verdict("UNSURE"), None);
        assert_eq!(parse_verdict("The answer is CORRECT"), None);
        assert_eq!(parse_verdict(""), None);
    }
}
