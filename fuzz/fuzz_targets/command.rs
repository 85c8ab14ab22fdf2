//! The command tokenizer (the shipped model's tokenizer.json): any text
//! either tokenises to ordinary text ids within the model's limits, or is
//! refused with an error. Text that spells a special token stays text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vla_demo::limits::MAX_COMMAND_BYTES;
use vla_demo::model::Config;
use vla_demo::tokens::CommandTokenizer;

fn shipped() -> &'static (CommandTokenizer, Config) {
    static T: OnceLock<(CommandTokenizer, Config)> = OnceLock::new();
    T.get_or_init(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/context/");
        let tok = CommandTokenizer::from_file(format!("{root}tokenizer.json").as_ref()).unwrap();
        let cfg = Config::from_json(&std::fs::read_to_string(format!("{root}config.json")).unwrap())
            .unwrap();
        (tok, cfg)
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (tok, cfg) = shipped();
    let Ok(enc) = tok.encode(&text) else {
        return;
    };
    assert!(text.len() <= MAX_COMMAND_BYTES);
    assert_eq!(enc.ids.len(), enc.tokens.len());
    assert_eq!(enc.ids.len(), enc.word_ids.len());
    let specials = [tok.pad_id(), tok.boa_id()];
    let actions = tok.action_offset()..tok.action_offset() + 515;
    for &id in &enc.ids {
        assert!(!specials.contains(&id) && !actions.contains(&id), "special id {id}");
        assert!((id as usize) < cfg.vocab_size);
    }
    // The batch path: either fits max_text_len or is an error.
    let _ = vla_demo::data::encode_commands(tok, cfg, &[text.as_ref()], &candle::Device::Cpu);
});
