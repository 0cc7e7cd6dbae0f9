use super::*;

#[test]
fn a_ring_keeps_the_end_and_counts_what_it_dropped() {
    let mut r = Ring::<16>::default();
    r.push(b"hello");
    assert_eq!(r.read(0, 100), (b"hello".to_vec(), 0, 0));
    assert_eq!(r.read(3, 1), (b"l".to_vec(), 3, 0));
    r.push(&[b'x'; 16]);
    let (data, at, dropped) = r.read(0, 10);
    assert_eq!((at, dropped), (5, 5));
    assert_eq!(data, vec![b'x'; 10]);
    // Past the end: nothing, from the end.
    assert_eq!(r.read(u64::MAX, 10).0, Vec::<u8>::new());
}
