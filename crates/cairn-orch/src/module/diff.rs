//! Rendering a [`Diff`] for people.

use super::outcome::Diff;

impl Diff {
    /// A unified diff of `before` and `after` for text, or `before -> after`.
    pub fn render(&self) -> String {
        render(self)
    }
}

pub fn render(d: &Diff) -> String {
    match (&d.before, &d.after) {
        (Some(b), Some(a)) if b.contains('\n') || a.contains('\n') => {
            let text = similar_text(b, a);
            format!("--- {0} (before)\n+++ {0} (after)\n{text}", d.what)
        }
        (b, a) => format!(
            "{}: {} -> {}",
            d.what,
            b.as_deref().unwrap_or("(absent)"),
            a.as_deref().unwrap_or("(absent)")
        ),
    }
}

fn similar_text(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .to_string()
}
