//! TEMPORARY STUB so the model code compiles while the real scene module is written.
use anyhow::Result;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use crate::action::{Action, Gripper, Waypoint};
pub mod cli {
    #[derive(clap::Args, Debug)]
    pub struct SceneArgs { #[arg(long, default_value_t = 0)] pub seed: u64 }
    pub fn run(_a: &SceneArgs) -> anyhow::Result<()> { Ok(()) }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Color { Red, Green, Blue, Yellow, Purple, Orange }
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang { En, Ko }
impl Lang { pub const ALL: [Lang; 2] = [Lang::En, Lang::Ko]; }
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family { Pick, Place, Push, Relational }
impl Family { pub const ALL: [Family; 4] = [Family::Pick, Family::Place, Family::Push, Family::Relational]; }
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Object { pub id: usize, pub color: Color, pub center: [f32; 2], pub size: f32 }
impl Object {
    pub fn contains(&self, x: f32, y: f32) -> bool { (x - self.center[0]).hypot(y - self.center[1]) <= self.size / 2.0 }
    pub fn bbox(&self) -> [f32; 4] { let r = self.size / 2.0; [self.center[0] - r, self.center[1] - r, self.center[0] + r, self.center[1] + r] }
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command { pub text: String, pub lang: Lang, pub family: Family, pub target: usize, pub destination: Option<usize>, pub action: Action }
pub struct Layout { pub seed: u64, pub objects: Vec<Object> }
const COLORS: [Color; 6] = [Color::Red, Color::Green, Color::Blue, Color::Yellow, Color::Purple, Color::Orange];
const RGB: [[u8; 3]; 6] = [[220, 40, 40], [40, 180, 60], [40, 70, 220], [230, 210, 40], [150, 60, 190], [240, 140, 30]];
const NAMES: [&str; 6] = ["red", "green", "blue", "yellow", "purple", "orange"];
impl Layout {
    pub fn generate(seed: u64) -> Layout {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut objects: Vec<Object> = Vec::new();
        let mut perm: Vec<usize> = (0..6).collect();
        for i in (1..6).rev() { let j = rng.random_range(0..=i); perm.swap(i, j); }
        let n = rng.random_range(2..=5);
        while objects.len() < n {
            let c = [rng.random_range(0.15..0.85f32), rng.random_range(0.15..0.85f32)];
            if objects.iter().all(|o| (o.center[0] - c[0]).hypot(o.center[1] - c[1]) > 0.2) {
                objects.push(Object { id: objects.len(), color: COLORS[perm[objects.len()]], center: c, size: 0.15 });
            }
        }
        Layout { seed, objects }
    }
    pub fn render(&self, size: u32) -> Result<image::RgbImage> {
        let mut img = image::RgbImage::from_pixel(size, size, image::Rgb([180, 160, 130]));
        for (x, y, p) in img.enumerate_pixels_mut() {
            let (u, v) = ((x as f32 + 0.5) / size as f32, (y as f32 + 0.5) / size as f32);
            for o in &self.objects { if o.contains(u, v) { *p = image::Rgb(RGB[COLORS.iter().position(|c| *c == o.color).unwrap()]); } }
        }
        Ok(img)
    }
}
pub fn sample_command(layout: &Layout, family: Family, lang: Lang, rng: &mut impl Rng) -> Option<Command> {
    if family != Family::Pick { return None; }
    let o = &layout.objects[rng.random_range(0..layout.objects.len())];
    let name = NAMES[COLORS.iter().position(|c| *c == o.color).unwrap()];
    let text = match lang { Lang::En => format!("pick up the {name} thing"), Lang::Ko => format!("{name} 집어") };
    Some(Command { text, lang, family, target: o.id, destination: None, action: Action { waypoints: vec![Waypoint { x: o.center[0], y: o.center[1], gripper: Gripper::Close }] } })
}
