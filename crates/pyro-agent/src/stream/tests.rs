use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_sees_end_or_breakage() {
    let (tx, rx) = mpsc::channel(4);
    let t = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        ChunkReader::new(rx).read_to_string(&mut s).map(|_| s)
    });
    tx.send(b"ab".to_vec()).await.unwrap();
    tx.send(b"cd".to_vec()).await.unwrap();
    tx.send(Vec::new()).await.unwrap();
    assert_eq!(t.await.unwrap().unwrap(), "abcd");

    let (tx, rx) = mpsc::channel(4);
    let t = tokio::task::spawn_blocking(move || {
        let mut s = Vec::new();
        ChunkReader::new(rx).read_to_end(&mut s)
    });
    tx.send(b"partial".to_vec()).await.unwrap();
    drop(tx);
    assert_eq!(
        t.await.unwrap().unwrap_err().kind(),
        std::io::ErrorKind::UnexpectedEof
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_round_trip_through_the_pumps() {
    let (tx, rx) = mpsc::channel(4);
    let writer = tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter::new(tx);
        w.write_all(&vec![7u8; CHUNK_BYTES * 2 + 5]).unwrap();
    });
    let mut wire = Vec::new();
    pump_out(&mut wire, rx).await.unwrap();
    writer.await.unwrap();
    let (tx, rx) = mpsc::channel(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        ChunkReader::new(rx).read_to_end(&mut v).map(|_| v.len())
    });
    assert_eq!(pump_in(&mut wire.as_slice(), tx).await, Inbound::Ended);
    assert_eq!(reader.await.unwrap().unwrap(), CHUNK_BYTES * 2 + 5);
}
