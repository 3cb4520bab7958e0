//! A child process for the crash test: appends events to a store from several
//! threads and prints `ack <seq> <id>` for each receipt, flushed, until killed.

use std::io::Write;
use std::sync::Arc;

use ledger_core::{Event, FileStore, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("store dir");
    let run: u64 = args.next().expect("run number").parse().expect("number");
    let (store, _) = FileStore::open(std::path::Path::new(&dir)).expect("open store");
    let store = Arc::new(store);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for k in 0u64.. {
                    let n = 1 + (k * 7 + t) % 50;
                    let events: Vec<Event> = (0..n)
                        .map(|i| {
                            let id = format!("r{run}-t{t}-k{k}-i{i}");
                            Event::from_json(
                                ledger_tests::event_line(&id, &format!("M{t}")).as_bytes(),
                            )
                            .unwrap()
                        })
                        .collect();
                    let ids: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
                    let receipts = store.append(events).expect("append");
                    let mut out = std::io::stdout().lock();
                    for (id, r) in ids.iter().zip(receipts) {
                        writeln!(out, "ack {} {id}", r.seq).unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
