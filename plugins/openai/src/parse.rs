//! Reading a language model's replies: verdicts, prompt lists and single prompts, robust to the
//! chatter models add around them.

use evolve_sdk::PluginError;

/// Which image the reply prefers: `Some(0)` for (A), `Some(1)` for (B), `None` if it says
/// neither or both.
pub fn verdict(reply: &str) -> Option<usize> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(reply.trim()) {
        let answer = value.get("better").or_else(|| value.get("answer")).and_then(|v| v.as_str());
        if let Some(answer) = answer {
            return verdict(answer);
        }
    }
    let text = reply.to_ascii_uppercase();
    let says = |label: char| {
        [format!("({label})"), format!("{label} IS BETTER"), format!("IMAGE {label}"), format!("ANSWER: {label}")]
            .iter()
            .any(|needle| text.contains(needle.as_str()))
            || text.trim().trim_matches(|c: char| !c.is_ascii_alphanumeric()) == label.to_string()
    };
    match (says('A'), says('B')) {
        (true, false) => Some(0),
        (false, true) => Some(1),
        _ => None,
    }
}

/// A list of prompts: a JSON list anywhere in the reply, else one per line (numbering and
/// bullets stripped). Fails (retryably: a resample may be well-formed) when none is found.
pub fn prompt_list(reply: &str) -> Result<Vec<String>, PluginError> {
    if let (Some(start), Some(end)) = (reply.find('['), reply.rfind(']'))
        && start < end
        && let Ok(list) = serde_json::from_str::<Vec<String>>(&reply[start..=end])
    {
        let list: Vec<String> = list.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
        if !list.is_empty() {
            return Ok(list);
        }
    }
    let lines: Vec<String> = reply
        .lines()
        .map(|l| l.trim().trim_start_matches(|c: char| c.is_ascii_digit() || "-*.)# ".contains(c)))
        .map(|l| l.trim().trim_matches('"').trim().to_string())
        .filter(|l| !l.is_empty() && !l.ends_with(':') && !l.starts_with('[') && !l.starts_with(']'))
        .collect();
    if lines.is_empty() {
        return Err(PluginError::transient(format!("no prompt list in the judge's reply: {reply:?}")));
    }
    Ok(lines)
}

/// `list` without repeats (ignoring case and surrounding space) and without `original`, in order.
pub fn distinct(list: Vec<String>, original: &str) -> Vec<String> {
    let key = |p: &str| p.trim().to_lowercase();
    let mut seen = std::collections::HashSet::from([key(original)]);
    list.into_iter().filter(|p| seen.insert(key(p))).collect()
}

/// One prompt: the first of a JSON list (the paper asks for `["..."]`), else the first
/// non-empty line, unquoted.
pub fn single_prompt(reply: &str) -> Result<String, PluginError> {
    if let (Some(start), Some(end)) = (reply.find('['), reply.rfind(']'))
        && start < end
        && let Ok(list) = serde_json::from_str::<Vec<String>>(&reply[start..=end])
        && let Some(first) = list.into_iter().map(|p| p.trim().to_string()).find(|p| !p.is_empty())
    {
        return Ok(first);
    }
    reply
        .lines()
        .map(|l| l.trim().trim_matches('"').trim())
        .find(|l| !l.is_empty())
        .map(String::from)
        .ok_or_else(|| PluginError::transient("empty reply to a mutation request"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_in_every_shape_models_write_them() {
        assert_eq!(verdict("(A) is better"), Some(0));
        assert_eq!(verdict("I think (B) is better because the circle is red."), Some(1));
        assert_eq!(verdict("{\"better\": \"B\"}"), Some(1));
        assert_eq!(verdict(" A "), Some(0));
        assert_eq!(verdict("Image B matches the description."), Some(1));
        assert_eq!(verdict("Both are equally good."), None);
        assert_eq!(verdict("(A) is better than (B)"), None, "names both: ambiguous");
        assert_eq!(verdict(""), None);
    }

    #[test]
    fn prompt_lists_from_json_or_lines() {
        assert_eq!(
            prompt_list("Sure! [\"a red circle\", \"two blue squares\"]").unwrap(),
            ["a red circle", "two blue squares"]
        );
        assert_eq!(
            prompt_list("1. a red circle\n2. \"a green square\"\n").unwrap(),
            ["a red circle", "a green square"]
        );
        assert!(prompt_list("   \n").is_err());
        assert!(prompt_list("   \n").unwrap_err().is_retryable());
    }

    #[test]
    fn distinct_drops_repeats_and_the_original() {
        let list = ["a blue circle", "A blue circle ", "a red circle", "two squares"].map(String::from).to_vec();
        assert_eq!(distinct(list, "a red circle"), ["a blue circle", "two squares"]);
    }

    #[test]
    fn single_prompts_are_the_first_line() {
        assert_eq!(single_prompt("[\"a cat on a mat\"]").unwrap(), "a cat on a mat");
        assert_eq!(single_prompt("Here: [\"\", \"two dogs\"] done").unwrap(), "two dogs");
        assert_eq!(single_prompt("\n\"three purple diamonds\"\nThat is new.").unwrap(), "three purple diamonds");
        assert!(single_prompt("").is_err());
    }
}
