//! The cases, by faults.md section.

/// `case!(row, function, pairs)`: a named case whose name is the function's.
macro_rules! case {
    ($row:expr, $name:ident, $pairs:expr) => {
        $crate::Case {
            row: $row,
            name: stringify!($name),
            pairs: $pairs,
            run: |pair| Box::pin($name(pair)),
        }
    };
}

mod framing;
mod handshake;
mod lifecycle;
mod messages;
mod negotiate;
mod network;
mod refusals;
mod stateful;

pub(crate) fn all() -> Vec<crate::Case> {
    let mut all = Vec::new();
    all.extend(handshake::cases());
    all.extend(framing::cases());
    all.extend(messages::cases());
    all.extend(network::cases());
    all.extend(negotiate::cases());
    all.extend(stateful::cases());
    all.extend(lifecycle::cases());
    all.extend(refusals::cases());
    all
}
