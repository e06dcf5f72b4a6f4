//! A component that imports an interface dohost does not provide
//! (`test:stray/clock`): loading it must fail with an error naming the
//! import.

wit_bindgen::generate!({
    inline: r#"
        package test:stray;

        interface clock {
            now: func() -> u64;
        }

        world stray {
            import clock;
            export run: func() -> u64;
        }
    "#,
});

struct Stray;

impl Guest for Stray {
    fn run() -> u64 {
        test::stray::clock::now()
    }
}

export!(Stray);
