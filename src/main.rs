fn main() {
    println!("certorder");
}
