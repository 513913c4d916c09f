//! Where an arm wins or loses: each run's ShapesEval score per category (GenEval's six), kept
//! beside its overall score and averaged per arm and budget in a second table.
//!
//! The overall score is the mean of the categories, so two arms can tie overall while one draws
//! counts and the other colours; and a director that buys more of what fails should, if its
//! purchases help, score higher in those categories. The table shows whether it does.

use super::{Arm, Point, Settings};

/// Category scores as one `points.csv` field: `name:score` pairs joined by `;` (the file's
/// separator is the comma).
pub fn encode(categories: &[(String, f64)]) -> String {
    let pairs: Vec<String> = categories.iter().map(|(name, score)| format!("{name}:{score:.6}")).collect();
    pairs.join(";")
}

/// The category scores of an [`encode`]d field (`None` if it is not one; an empty field, from
/// a point scored before categories were kept, is no categories).
pub fn decode(field: &str) -> Option<Vec<(String, f64)>> {
    field
        .split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, score) = pair.split_once(':')?;
            Some((name.to_string(), score.parse().ok()?))
        })
        .collect()
}

/// Per arm and budget, each category's mean score over the seeds that recorded categories, in
/// percent; `None` when no point has any (every point from before they were kept).
pub fn table(points: &[Point], settings: &Settings) -> Option<String> {
    let names: Vec<&str> =
        points.iter().find(|p| !p.categories.is_empty())?.categories.iter().map(|c| c.0.as_str()).collect();
    let width = settings.arms.iter().map(|a| a.name().len()).max().unwrap_or(0) + 12;
    let columns: String = names.iter().map(|n| format!("{n:>14}")).collect();
    let mut text = format!("{:<width$}{columns}\n", "per category (mean over seeds)");
    for &budget in &settings.budgets {
        for &arm in &settings.arms {
            if let Some(cells) = means(points, arm, budget, &names) {
                let cells: String = cells.iter().map(|m| format!("{:>14}", format!("{:.1}%", 100.0 * m))).collect();
                text.push_str(&format!("{:<width$}{cells}\n", format!("{}, {budget} calls", arm.name())));
            }
        }
    }
    Some(text)
}

/// `arm`'s mean score at `budget` in each of `names`, over its points that recorded all of them.
fn means(points: &[Point], arm: Arm, budget: u64, names: &[&str]) -> Option<Vec<f64>> {
    let scored: Vec<Vec<f64>> = points
        .iter()
        .filter(|p| (p.arm, p.budget) == (arm, budget))
        .filter_map(|p| names.iter().map(|n| p.categories.iter().find(|c| c.0 == *n).map(|c| c.1)).collect())
        .collect();
    if scored.is_empty() {
        return None;
    }
    Some((0..names.len()).map(|i| scored.iter().map(|s| s[i]).sum::<f64>() / scored.len() as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_field_reads_back_as_written_and_a_bad_one_is_refused() {
        let categories = vec![("counting".to_string(), 0.25), ("position".to_string(), 0.5)];
        assert_eq!(decode(&encode(&categories)), Some(categories));
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("counting=0.25"), None);
        assert_eq!(decode("counting:a quarter"), None);
    }

    #[test]
    fn the_table_averages_each_category_over_seeds_per_arm_and_budget() {
        let settings = Settings { arms: vec![Arm::Uniform, Arm::Director], ..Settings::quick(PathBuf::new()) };
        let point = |arm, seed, counting: f64| Point {
            arm,
            budget: settings.budgets[0],
            seed,
            calls: 8,
            score: 0.3,
            seconds: 1.0,
            images: 1,
            categories: vec![("counting".into(), counting), ("position".into(), 0.1)],
        };
        let mut points = vec![point(Arm::Uniform, 0, 0.2), point(Arm::Uniform, 1, 0.4), point(Arm::Director, 0, 0.9)];
        let text = table(&points, &settings).expect("categories were kept");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("counting") && lines[0].contains("position"), "{text}");
        assert!(lines[1].starts_with("uniform (baseline), 8 calls") && lines[1].contains("30.0%"), "{text}");
        assert!(lines[2].contains("90.0%") && lines[2].contains("10.0%"), "{text}");
        // Points scored before categories were kept: no table.
        points.iter_mut().for_each(|p| p.categories.clear());
        assert_eq!(table(&points, &settings), None);
    }
}
