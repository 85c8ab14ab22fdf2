//! The explanation as text: the three steps with their tables, the decision,
//! the word × object table and the two masks, aligned for Hangul too.

use std::fmt::Write as _;

use super::{Explanation, PatchLine};
use crate::maps;
use crate::output::printable;

/// Terminal columns a string takes: Hangul and other wide characters take two.
pub fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFF00..=0xFF60 => 2,
            _ => 1,
        })
        .sum()
}

/// `s` padded with spaces to `width` terminal columns.
pub fn pad(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(display_width(s))))
}

impl Explanation {
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = self.write_text(&mut s);
        s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
    }

    fn patch_table(&self, s: &mut String, lines: &[PatchLine], show: &[&str]) -> std::fmt::Result {
        let on = !self.objects.is_empty();
        writeln!(
            s,
            "    patch  (row, col)  {}{}",
            show.iter().map(|h| format!("{h:>12}")).collect::<String>(),
            if on { "  lies on" } else { "" }
        )?;
        for l in lines {
            let vals: String = show
                .iter()
                .map(|h| match *h {
                    "score e" => format!("{:>12.4}", l.score),
                    "weight α" => format!("{:>12.6}", l.weight),
                    "|α·v|" => format!("{:>12.4}", l.contribution),
                    _ => format!("{:>11.1}%", l.share * 100.0),
                })
                .collect();
            writeln!(
                s,
                "    {:>5}  ({:>3}, {:>3})  {vals}  {}",
                l.index,
                l.row,
                l.col,
                l.on.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }

    fn write_text(&self, s: &mut String) -> std::fmt::Result {
        writeln!(s, "explain: how the first action token chose where to look")?;
        writeln!(
            s,
            "command \"{}\"; query <boa> (its output predicts the first action token)",
            printable(&self.command)
        )?;
        writeln!(
            s,
            "keys and values: the {} image patches; fusion block {} of {}, head {} of {} ({})",
            self.num_patches, self.layer, self.layers, self.head, self.heads, self.head_choice
        )?;
        writeln!(s)?;
        writeln!(
            s,
            "Step 1 · Score: how well <boa>'s query matches each patch's key: {}",
            self.score_fn
        )?;
        writeln!(
            s,
            "  over all {} patches: min {:.4}, mean {:.4}, max {:.4}. The top {}:",
            self.num_patches,
            self.score_min,
            self.score_mean,
            self.score_max,
            self.top_by_score.len()
        )?;
        self.patch_table(s, &self.top_by_score, &["score e"])?;
        writeln!(s)?;
        writeln!(s, "Step 2 · Align: α = softmax(e) = exp(e_i) / Σ_j exp(e_j), so every weight is positive and they sum to 1")?;
        self.patch_table(s, &self.top_by_score, &["score e", "weight α"])?;
        writeln!(
            s,
            "  sum of all {} weights = {:.6}",
            self.num_patches, self.weight_sum
        )?;
        writeln!(s, "  (recomputed from the scores with the model's own softmax; largest gap to the weights the model used: {:.1e})", self.align_check)?;
        writeln!(s)?;
        writeln!(s, "Step 3 · Attend: the context c = Σ_i α_i v_i mixes the patches' value vectors (d = {})", self.head_dim)?;
        let first: Vec<String> = self
            .context_first
            .iter()
            .map(|x| format!("{x:.3}"))
            .collect();
        writeln!(
            s,
            "  c = [{}, …], |c| = {:.4}",
            first.join(", "),
            self.context_norm
        )?;
        writeln!(
            s,
            "  the patches contributing most (length of α_i v_i, and its share of all):"
        )?;
        self.patch_table(
            s,
            &self.top_by_contribution,
            &["weight α", "|α·v|", "share"],
        )?;
        writeln!(
            s,
            "  these {} patches alone give a vector at cosine {:.3} to c",
            self.top_by_contribution.len(),
            self.top_cosine
        )?;
        if let Some([u, v, r]) = self.looked {
            writeln!(
                s,
                "  and where it looked, Σ_i α_i (u_i, v_i, u_i²+v_i²) = ({u:.3}, {v:.3}, {r:.3}) with u, v in [-1, 1], goes into the output too (the position terms)"
            )?;
        }

        writeln!(s)?;
        writeln!(s, "Step 4 · Decide: is the thing named here at all?")?;
        writeln!(
            s,
            "  the weights always sum to 1, so attention lands somewhere even when nothing fits; the raw scores do not: here the best is {:.3} against a mean of {:.3}",
            self.score_max, self.score_mean
        )?;
        writeln!(
            s,
            "  so the model answers from the context, with its first action token: P(act) = Σ P(x bin) = {:.3}, P(<absent>) = {:.3}, P(<ambiguous>) = {:.3}",
            1.0 - self.refusal[0] - self.refusal[1],
            self.refusal[0],
            self.refusal[1]
        )?;
        writeln!(
            s,
            "  the largest of the three wins: {} (p {:.3} for this token)",
            self.first_token, self.first_prob
        )?;
        if !self.word_object.is_empty() {
            writeln!(s)?;
            writeln!(s, "Word × object: mean attention per patch of each word's query on each object (fusion block {}, heads averaged)", self.layer)?;
            let w0 = self
                .word_object
                .iter()
                .map(|(w, _)| display_width(w))
                .max()
                .unwrap_or(4)
                .max(6)
                + 2;
            let cw = self
                .objects
                .iter()
                .map(|o| display_width(o))
                .max()
                .unwrap_or(6)
                .max(8)
                + 2;
            write!(s, "  {}", pad("", w0))?;
            for o in &self.objects {
                write!(s, "{}", pad(o, cw))?;
            }
            writeln!(s)?;
            for (word, cells) in &self.word_object {
                let best = maps::argmax(cells);
                write!(s, "  {}", pad(word, w0))?;
                for (i, c) in cells.iter().enumerate() {
                    let cell = format!("{:.4}{}", c, if i == best { " ◀" } else { "" });
                    write!(s, "{}", pad(&cell, cw))?;
                }
                writeln!(s)?;
            }
            writeln!(
                s,
                "  (◀ marks each row's largest; uniform attention would be {:.4} everywhere)",
                1.0 / self.num_patches as f32
            )?;
        }

        writeln!(s)?;
        writeln!(
            s,
            "Causal mask of the command decoder: ○ = may attend, × = hidden (the future)"
        )?;
        mask_table(s, &self.mask_tokens, &self.causal_mask)?;
        writeln!(s)?;
        if self.prefix_lm {
            writeln!(
                s,
                "Mask of the fusion head's self-attention (prefix-LM): the words see each other \
                 both ways, <boa> and the action tokens only what came before them"
            )?;
        } else {
            writeln!(
                s,
                "Mask of the fusion head's self-attention: causal, as in the decoder"
            )?;
        }
        mask_table(s, &self.fusion_mask_tokens, &self.fusion_mask)
    }
}

/// A ○/× table: row = query token, column = key token.
fn mask_table(s: &mut String, tokens: &[String], rows: &[Vec<bool>]) -> std::fmt::Result {
    let w = tokens
        .iter()
        .map(|t| display_width(t))
        .max()
        .unwrap_or(1)
        .max(5)
        + 2;
    write!(s, "  {}", pad("q \\ k", w))?;
    for t in tokens {
        write!(s, "{}", pad(t, w))?;
    }
    writeln!(s)?;
    for (t, row) in tokens.iter().zip(rows) {
        write!(s, "  {}", pad(t, w))?;
        for &ok in row {
            write!(s, "{}", pad(if ok { "○" } else { "×" }, w))?;
        }
        writeln!(s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_pad_to_the_same_column() {
        assert_eq!(display_width("컵"), 2);
        assert_eq!(display_width("cup"), 3);
        assert_eq!(display_width(&pad("빨간", 6)), 6);
        assert_eq!(display_width(&pad("red", 6)), 6);
    }
}
