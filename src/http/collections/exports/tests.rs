//! Unit tests of the parent module.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_abandons_the_export_after_the_send_timeout() {
    // One chunk fits the channel; the client never reads, so the second chunk waits.
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let runtime = tokio::runtime::Handle::current();
    let writer = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::new(),
            runtime,
            wait: std::time::Duration::from_millis(200),
        };
        let chunk = vec![7u8; CHUNK];
        w.write_all(&chunk)?;
        w.write_all(&chunk)
    });
    let err = writer.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("abandoned"), "{err}");
    drop(rx);

    // A client that goes away stops the writer at once.
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    drop(rx);
    let runtime = tokio::runtime::Handle::current();
    let err = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::new(),
            runtime,
            wait: std::time::Duration::from_secs(3600),
        };
        w.write_all(&vec![0u8; CHUNK])
    })
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
}
