//! The `psychiq` server: the demo workers as the systems `demo` and `demo-limits`, and any TOML file of
//! command workers given with `-s FILE.toml`.

use std::path::Path;
use std::process::ExitCode;

use psychiq::cli::Cli;

fn main() -> ExitCode {
    Cli::new("psychiq")
        .system("demo", psychiq::demo::registry())
        .system("demo-limits", psychiq::demo::limited())
        .loader(|name| {
            let path = Path::new(name);
            (name.ends_with(".toml") || path.is_file())
                .then(|| psychiq::command::load_workers(path))
        })
        .run()
}
