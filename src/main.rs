fn main() {
    println!("vla-demo");
}
