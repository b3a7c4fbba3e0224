//! `sagellm`: the operator CLI (see `sagellm_gateway::cli`).

fn main() -> std::process::ExitCode {
    sagellm_gateway::cli::main()
}
