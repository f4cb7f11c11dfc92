//! `linux.seccomp` compiled to classic BPF in pure Rust (not yet: refused by the runtime).
