//! Words -> token ids: the command tokenizer.
//!
//! A Hugging Face `tokenizers` BPE model trained by this project on its own
//! command grammar (English and Korean), saved as tokenizer.json in every
//! checkpoint. Every word the grammar can produce is a single token, so the
//! attention maps read word by word. A word the grammar never produces still
//! works: BPE splits it into known pieces, and a character it has never seen
//! falls back to its UTF-8 bytes (`<0xEB>` ...), never to a crash or a silent
//! drop. Such words are reported as unknown.
//!
//! A run tokenises each command once ([`CommandTokenizer::encode`], checked
//! against the model's length by [`check_length`]) and passes the
//! [`Encoded`] on: [`to_ids`] pads it into the model's input, and the
//! report, grounding and the figures read its tokens and words.
//!
//! After the text vocabulary come the special tokens: `<pad>`, `<unk>`,
//! `<boa>` (begin of action), then the action slice `<x_000>..<y_255>`,
//! `<open>`, `<close>`, `<eoa>`, in [`ActionToken`] order.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle::{Device, Tensor};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{Lowercase, Sequence as Normalizers, NFC};
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::{AddedToken, Tokenizer};

use crate::action::ActionToken;
use crate::limits::MAX_COMMAND_BYTES;

pub const PAD: &str = "<pad>";
pub const UNK: &str = "<unk>";
pub const BOA: &str = "<boa>";

/// A command, tokenised.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// The token strings, as the tokenizer writes them.
    pub tokens: Vec<String>,
    /// For each token, the index of the word it came from.
    pub word_ids: Vec<usize>,
    /// The command's words, split on whitespace after normalisation.
    pub words: Vec<String>,
    /// Words that are not a single known token.
    pub unknown_words: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CommandTokenizer {
    inner: Tokenizer,
    pad: u32,
    boa: u32,
    action_offset: u32,
}

/// The one check every command goes through before it is tokenised: at
/// most [`MAX_COMMAND_BYTES`] bytes (refused before any slow work), no
/// control character but a space, a tab or a line break (an escape
/// sequence, a NUL or DEL is not a word, and a terminal would act on it),
/// and not empty once normalised. Returns the normalised command.
pub fn check_command(text: &str) -> Result<String> {
    if text.len() > MAX_COMMAND_BYTES {
        bail!(
            "the command is {} bytes long; commands are at most {MAX_COMMAND_BYTES} bytes",
            text.len()
        );
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        bail!(
            "the command holds the control character U+{:04X}; commands are plain words, e.g. \"pick up the red cup\"",
            c as u32
        );
    }
    let t = normalise_command(text);
    if t.is_empty() {
        bail!("the command is empty: say what to do, e.g. \"pick up the red cup\"");
    }
    Ok(t)
}

/// Refuses a tokenised command longer than the model reads (`max_text_len`).
pub fn check_length(e: &Encoded, max_text_len: usize) -> Result<()> {
    if e.ids.len() > max_text_len {
        bail!(
            "the command is {} tokens long; this model reads at most {} tokens",
            e.ids.len(),
            max_text_len
        );
    }
    Ok(())
}

/// Tokenised commands -> (B, T) ids, left-padded with `pad_id` so every
/// command ends at the last position, and each command's length.
pub fn to_ids<'a>(
    encoded: impl IntoIterator<Item = &'a Encoded>,
    pad_id: u32,
    device: &Device,
) -> Result<(Tensor, Vec<usize>)> {
    let ids: Vec<&[u32]> = encoded.into_iter().map(|e| e.ids.as_slice()).collect();
    let t = ids.iter().map(|i| i.len()).max().unwrap_or(1);
    let lens: Vec<usize> = ids.iter().map(|i| i.len()).collect();
    let mut flat = Vec::with_capacity(ids.len() * t);
    for i in &ids {
        flat.extend(std::iter::repeat_n(pad_id, t - i.len()));
        flat.extend(*i);
    }
    Ok((Tensor::from_vec(flat, (ids.len(), t), device)?, lens))
}

/// Trims a command and drops final punctuation, which the grammar never uses.
pub fn normalise_command(text: &str) -> String {
    let t = text.trim().trim_end_matches(['.', '!', '?', '。']);
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl CommandTokenizer {
    /// Trains the BPE vocabulary on a corpus of commands.
    pub fn train<I: Iterator<Item = String> + Send>(corpus: I) -> Result<Self> {
        let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
        let specials: Vec<AddedToken> = [PAD, UNK, BOA]
            .iter()
            .map(|s| s.to_string())
            .chain(bytes)
            .map(|s| AddedToken::from(s, true))
            .collect();
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(4000)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(specials)
            .build();
        let model = BPE::builder()
            .byte_fallback(true)
            .unk_token(UNK.to_string())
            .build()
            .map_err(|e| anyhow!("building the BPE model: {e}"))?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_normalizer(Some(Normalizers::new(vec![NFC.into(), Lowercase.into()])));
        tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
        let mut trainer = TrainerWrapper::BpeTrainer(trainer);
        tokenizer
            .train(&mut trainer, corpus.map(|c| normalise_command(&c)))
            .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
        let actions: Vec<AddedToken> = ActionToken::all()
            .map(|t| AddedToken::from(t.text(), true))
            .collect();
        tokenizer.add_special_tokens(&actions);
        Self::from_tokenizer(tokenizer)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner =
            Tokenizer::from_bytes(bytes).map_err(|e| anyhow!("not a valid tokenizer.json: {e}"))?;
        Self::from_tokenizer(inner)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = crate::input::read_file(path, crate::limits::MAX_JSON_BYTES, "tokenizer")?;
        Self::from_bytes(&bytes).with_context(|| format!("in {}", path.display()))
    }

    fn from_tokenizer(mut inner: Tokenizer) -> Result<Self> {
        // Text that spells a special token (`<pad>`, `<boa>`, `<x_100>`) is
        // plain text in a command, never the special id.
        inner.set_encode_special_tokens(true);
        let id = |s: &str| {
            inner
                .token_to_id(s)
                .ok_or_else(|| anyhow!("the tokenizer has no {s} token"))
        };
        let pad = id(PAD)?;
        let boa = id(BOA)?;
        let action_offset = id(&ActionToken::X(0).text())?;
        // The action slice must be contiguous and in ActionToken order.
        for t in ActionToken::all() {
            if id(&t.text())? != action_offset + t.index() as u32 {
                bail!(
                    "the tokenizer's action tokens are not contiguous at {}",
                    t.text()
                );
            }
        }
        Ok(Self {
            inner,
            pad,
            boa,
            action_offset,
        })
    }

    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| anyhow!("serialising the tokenizer: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Refuses a tokenizer with an id the model has no embedding for (ids
    /// from 0 to `vocab_size` - 1): a command would fail inside the model.
    pub fn check_fits(&self, vocab_size: usize) -> Result<()> {
        let vocab = self.inner.get_vocab(true);
        if let Some((token, &id)) = vocab.iter().max_by_key(|(_, &id)| id) {
            if id as usize >= vocab_size {
                bail!(
                    "the tokenizer gives {token:?} the id {id}, but the model's vocab_size is {vocab_size}; the tokenizer and the config come from different checkpoints"
                );
            }
        }
        Ok(())
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    pub fn boa_id(&self) -> u32 {
        self.boa
    }

    pub fn action_offset(&self) -> u32 {
        self.action_offset
    }

    /// Tokenises a command. Empty commands are an error; length limits are
    /// the model's business (see `max_text_len`).
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let text = check_command(text)?;
        let enc = self
            .inner
            .encode(text.as_str(), false)
            .map_err(|e| anyhow!("tokenising {text:?}: {e}"))?;
        let ids = enc.get_ids().to_vec();
        if let Some(&id) = ids.iter().find(|&&id| self.is_control(id)) {
            bail!(
                "internal: the command {text:?} was encoded with the special token {}",
                self.id_to_token(id)
            );
        }
        let tokens = enc.get_tokens().to_vec();
        let word_ids: Vec<usize> = enc
            .get_word_ids()
            .iter()
            .map(|w| w.unwrap_or(0) as usize)
            .collect();
        let words: Vec<String> = text
            .to_lowercase()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut unknown_words = Vec::new();
        for (w, word) in words.iter().enumerate() {
            let pieces = word_ids.iter().filter(|&&i| i == w).count();
            if pieces != 1
                || ids[word_ids.iter().position(|&i| i == w).unwrap_or(0)] == self.unk_id()
            {
                unknown_words.push(word.clone());
            }
        }
        if unknown_words.len() == words.len() {
            bail!(
                "none of the words of {text:?} is known to the model: say what to do, e.g. \"pick up the red cup\""
            );
        }
        Ok(Encoded {
            ids,
            tokens,
            word_ids,
            words,
            unknown_words,
        })
    }

    /// Tokenises every command, then checks each against the model's
    /// `max_text_len`: the first error of either kind, in that order.
    pub fn encode_all(&self, texts: &[&str], max_text_len: usize) -> Result<Vec<Encoded>> {
        let encoded = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>>>()?;
        for e in &encoded {
            check_length(e, max_text_len)?;
        }
        Ok(encoded)
    }

    /// Commands straight to left-padded (B, T) ids and their lengths (for
    /// training and evaluation batches, which need no tokens beside the ids).
    pub fn encode_ids(
        &self,
        texts: &[&str],
        max_text_len: usize,
        device: &Device,
    ) -> Result<(Tensor, Vec<usize>)> {
        let mut encoded = Vec::with_capacity(texts.len());
        for t in texts {
            let e = self.encode(t)?;
            check_length(&e, max_text_len)?;
            encoded.push(e);
        }
        to_ids(&encoded, self.pad, device)
    }

    /// `<pad>`, `<boa>` and the action tokens: ids a command never holds.
    fn is_control(&self, id: u32) -> bool {
        id == self.pad
            || id == self.boa
            || (self.action_offset..self.action_offset + ActionToken::all().count() as u32)
                .contains(&id)
    }

    fn unk_id(&self) -> u32 {
        self.inner.token_to_id(UNK).unwrap_or(u32::MAX)
    }

    /// Id -> token text, for printing.
    pub fn id_to_token(&self, id: u32) -> String {
        self.inner
            .id_to_token(id)
            .unwrap_or_else(|| format!("<id {id}>"))
    }

    /// Every word a corpus uses, for tests.
    pub fn known_words(&self) -> HashSet<String> {
        self.inner.get_vocab(false).into_keys().collect()
    }
}
