use super::*;

#[tokio::test]
async fn frames_round_trip_in_order() {
    let mut buf = Vec::new();
    write_frame(&mut buf, FrameKind::Stdout, b"\xff\xfe binary")
        .await
        .unwrap();
    write_message(&mut buf, &Request::Ping).await.unwrap();
    write_frame(&mut buf, FrameKind::StdinEnd, b"")
        .await
        .unwrap();
    let mut r = buf.as_slice();
    let f = read_frame(&mut r).await.unwrap().unwrap();
    assert_eq!(f.kind, FrameKind::Stdout);
    assert_eq!(f.payload, b"\xff\xfe binary");
    let req: Request = read_frame(&mut r)
        .await
        .unwrap()
        .unwrap()
        .message()
        .unwrap();
    assert_eq!(req, Request::Ping);
    let f = read_frame(&mut r).await.unwrap().unwrap();
    assert_eq!((f.kind, f.payload.len()), (FrameKind::StdinEnd, 0));
    assert!(read_frame(&mut r).await.unwrap().is_none());
}

#[tokio::test]
async fn rejects_oversized_empty_unknown_and_truncated_frames() {
    let big = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
    assert!(matches!(
        read_frame(&mut &big[..]).await,
        Err(FrameError::TooLarge(_))
    ));
    let empty = 0u32.to_be_bytes();
    assert!(matches!(
        read_frame(&mut &empty[..]).await,
        Err(FrameError::Empty)
    ));
    let unknown = [0, 0, 0, 1, 99];
    assert!(matches!(
        read_frame(&mut &unknown[..]).await,
        Err(FrameError::UnknownKind(99))
    ));
    let truncated = [0, 0, 0, 9, 0, b'{'];
    assert!(matches!(
        read_frame(&mut &truncated[..]).await,
        Err(FrameError::Io(_))
    ));
}

#[tokio::test]
async fn a_non_message_frame_is_not_decoded_as_json() {
    let frame = Frame {
        kind: FrameKind::Data,
        payload: b"{}".to_vec(),
    };
    assert!(matches!(
        frame.message::<Request>(),
        Err(FrameError::Unexpected { .. })
    ));
    let bad = Frame {
        kind: FrameKind::Message,
        payload: b"{\"op\":\"nope\"}".to_vec(),
    };
    assert!(matches!(bad.message::<Request>(), Err(FrameError::Json(_))));
}

#[test]
fn tree_order_keeps_a_directory_with_its_entries() {
    let mut v = vec!["a.txt", "a/b", "a", "a/b/c", "b", "a-b"];
    v.sort_by(|x, y| tree_order(x, y));
    assert_eq!(v, ["a", "a/b", "a/b/c", "a-b", "a.txt", "b"]);
    assert_eq!(tree_order("/w/a", "/w/a"), std::cmp::Ordering::Equal);
}

#[test]
fn env_names() {
    assert!(valid_env_name("PATH"));
    assert!(valid_env_name("_x1"));
    assert!(!valid_env_name("1X"));
    assert!(!valid_env_name("A-B"));
    assert!(!valid_env_name(""));
}
