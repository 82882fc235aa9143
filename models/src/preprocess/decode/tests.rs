use super::*;

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

#[test]
fn crop_region_expands_and_clamps() {
    let img = gradient(100, 50);
    let c = crop_region(&img, 10.0, 10.0, 20.0, 10.0, 0.0).unwrap();
    assert_eq!(c.dimensions(), (20, 10));
    assert_eq!(c.get_pixel(0, 0), img.get_pixel(10, 10));
    let c = crop_region(&img, 10.0, 10.0, 20.0, 10.0, 0.5).unwrap();
    assert_eq!(c.dimensions(), (40, 20));
    assert_eq!(c.get_pixel(0, 0), img.get_pixel(0, 5));
    // x 85..145 and y 35..95, clamped to the 100x50 image
    let c = crop_region(&img, 90.0, 40.0, 50.0, 50.0, 0.1).unwrap();
    assert_eq!(c.dimensions(), (15, 15));
    assert!(crop_region(&img, 200.0, 10.0, 5.0, 5.0, 0.1).is_none());
    assert!(crop_region(&img, 10.0, 10.0, 0.0, 5.0, 0.1).is_none());
    assert!(crop_region(&img, f32::NAN, 10.0, 5.0, 5.0, 0.1).is_none());
    let c = crop_region(&img, 10.5, 10.2, 2.0, 2.0, 0.0).unwrap();
    assert_eq!(c.dimensions(), (3, 3));
}

// ---- decoding ----

fn encode(img: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn rgb_test_image(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(gradient(w, h))
}

/// Standard CRC-32 (PNG chunks).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header claims `w` x `h` pixels, with a tiny (wrong) body.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    png.extend(((idat.len() - 4) as u32).to_be_bytes());
    png.extend(idat);
    png.extend(crc32(idat).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    png
}

/// Inserts an EXIF APP1 segment with the given orientation right after a JPEG's SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec(); // big endian, IFD at 8
    tiff.extend(1u16.to_be_bytes()); // one entry
    tiff.extend(0x0112u16.to_be_bytes()); // Orientation
    tiff.extend(3u16.to_be_bytes()); // SHORT
    tiff.extend(1u32.to_be_bytes()); // count
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0]); // padding of the 4-byte value field
    tiff.extend(0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xff, 0xe1]);
    out.extend(((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
    out.extend(&jpeg[2..]);
    out
}

/// A 6x4 pure red CMYK JPEG (Adobe APP14, inverted CMYK), written by Pillow 12:
/// `Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save("cmyk.jpg", quality=95)`.
const CMYK_RED_JPEG_HEX: &[&str] = &[
    "ffd8ffee000e41646f626500640000000000ffdb00430002010101010102010101020202020204030202020205040403",
    "04060506060605060606070908060709070606080b08090a0a0a0a0a06080b0c0b0a0c090a0a0affc000140800040006",
    "044311004d11005911004b1100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc4",
    "00b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c115",
    "52d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566",
    "6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2",
    "c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda000e0443004d005900",
    "4b00003f00fdfcafe7febf9ffafdfcafffd9",
];

fn cmyk_jpeg() -> Vec<u8> {
    hex::decode(CMYK_RED_JPEG_HEX.concat()).unwrap()
}

#[test]
fn png_and_jpeg_decode_to_rgb_of_the_right_size() {
    let img = rgb_test_image(40, 30);
    let png = decode(
        &encode(&img, image::ImageFormat::Png),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(png, *img.as_rgb8().unwrap(), "png is lossless");
    let jpg = decode(
        &encode(&img, image::ImageFormat::Jpeg),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(jpg.dimensions(), (40, 30));
}

#[test]
fn sixteen_bit_grey_and_alpha_pngs_become_8_bit_rgb() {
    let limits = DecodeLimits::default();
    let rgb16 =
        image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(5, 3, image::Rgb([65535, 0, 32896]));
    let out = decode(
        &encode(&DynamicImage::ImageRgb16(rgb16), image::ImageFormat::Png),
        &limits,
    )
    .unwrap();
    assert_eq!(out.dimensions(), (5, 3));
    assert_eq!(out.get_pixel(2, 1).0, [255, 0, 128]);

    let grey = image::GrayImage::from_pixel(7, 2, image::Luma([77]));
    let out = decode(
        &encode(&DynamicImage::ImageLuma8(grey), image::ImageFormat::Png),
        &limits,
    )
    .unwrap();
    assert_eq!(out.dimensions(), (7, 2));
    assert_eq!(out.get_pixel(6, 1).0, [77, 77, 77]);

    // Alpha is dropped, not composited: what PIL's convert("RGB") does for CLIP.
    let rgba = image::RgbaImage::from_pixel(4, 4, image::Rgba([10, 20, 30, 0]));
    let out = decode(
        &encode(&DynamicImage::ImageRgba8(rgba), image::ImageFormat::Png),
        &limits,
    )
    .unwrap();
    assert_eq!(out.get_pixel(0, 0).0, [10, 20, 30]);
}

#[test]
fn webp_and_first_gif_frame_decode() {
    let limits = DecodeLimits::default();
    let img = rgb_test_image(9, 5);
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .encode(img.as_bytes(), 9, 5, image::ExtendedColorType::Rgb8)
        .unwrap();
    assert_eq!(decode(&webp, &limits).unwrap(), *img.as_rgb8().unwrap());

    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        for colour in [[255u8, 0, 0, 255], [0, 0, 255, 255]] {
            let frame = image::Frame::new(image::RgbaImage::from_pixel(6, 3, image::Rgba(colour)));
            enc.encode_frame(frame).unwrap();
        }
    }
    let out = decode(&gif, &limits).unwrap();
    assert_eq!(out.dimensions(), (6, 3));
    let p = out.get_pixel(0, 0).0;
    assert!(p[0] > 200 && p[2] < 50, "first frame is red, got {p:?}");
}

#[test]
fn cmyk_jpeg_decodes_to_rgb() {
    let out = decode(&cmyk_jpeg(), &DecodeLimits::default()).unwrap();
    assert_eq!(out.dimensions(), (6, 4));
    let p = out.get_pixel(3, 2).0;
    assert!(
        p[0] > 200 && p[1] < 60 && p[2] < 60,
        "red expected, got {p:?}"
    );
}

#[test]
fn exif_orientation_is_applied() {
    let img = rgb_test_image(40, 20);
    let jpeg = encode(&img, image::ImageFormat::Jpeg);
    let limits = DecodeLimits::default();
    // 6 = rotate 90 degrees clockwise to display
    assert_eq!(
        decode(&with_exif_orientation(&jpeg, 6), &limits)
            .unwrap()
            .dimensions(),
        (20, 40)
    );
    assert_eq!(
        decode(&with_exif_orientation(&jpeg, 3), &limits)
            .unwrap()
            .dimensions(),
        (40, 20)
    );
    assert_eq!(
        decode(&with_exif_orientation(&jpeg, 1), &limits)
            .unwrap()
            .dimensions(),
        (40, 20)
    );
    // orientation 3 (180 degrees) moves the top-left corner to the bottom-right
    let upright = decode(&jpeg, &limits).unwrap();
    let turned = decode(&with_exif_orientation(&jpeg, 3), &limits).unwrap();
    assert_eq!(turned.get_pixel(39, 19), upright.get_pixel(0, 0));
}

#[test]
fn bad_images_give_distinct_errors() {
    let limits = DecodeLimits::default();
    let png = encode(&rgb_test_image(64, 64), image::ImageFormat::Png);

    assert!(matches!(decode(&[], &limits), Err(ImageError::Empty)));
    assert!(matches!(
        decode(b"hello, this is not an image at all", &limits),
        Err(ImageError::UnsupportedFormat { .. })
    ));
    let mut corrupt = png.clone();
    for b in corrupt.iter_mut().skip(40) {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    assert!(
        matches!(decode(&corrupt, &limits), Err(ImageError::Corrupt(_))),
        "corrupt"
    );
    let truncated = &png[..png.len() / 2];
    assert!(
        matches!(decode(truncated, &limits), Err(ImageError::Corrupt(_))),
        "truncated"
    );
    let header_only = &png[..20];
    assert!(
        matches!(decode(header_only, &limits), Err(ImageError::Corrupt(_))),
        "header only"
    );

    let bomb = png_claiming(100_000, 100_000);
    match decode(&bomb, &limits) {
        Err(ImageError::TooManyPixels { width, height, max }) => {
            assert_eq!((width, height, max), (100_000, 100_000, limits.max_pixels));
        }
        other => panic!("pixel bomb gave {other:?}"),
    }
    let small = DecodeLimits {
        max_pixels: 1000,
        ..limits
    };
    assert!(matches!(
        decode(&png, &small),
        Err(ImageError::TooManyPixels { .. })
    ));
    let few_bytes = DecodeLimits {
        max_bytes: 100,
        ..limits
    };
    assert!(matches!(
        decode(&png, &few_bytes),
        Err(ImageError::TooManyBytes { .. })
    ));
    for e in [ImageError::Empty, ImageError::Corrupt("x".into())] {
        assert_eq!(e.fault(), crate::Fault::User);
    }
}

#[test]
fn stored_rects_map_onto_the_displayed_image_for_every_orientation() {
    // A 7x4 stored image, black with one white 2x1 block at (1, 2); each orientation turns
    // it as `DynamicImage::apply_orientation` does, and the mapped rectangle finds the block.
    let (sw, sh) = (7u32, 4u32);
    let stored = RgbImage::from_fn(sw, sh, |x, y| {
        if (1..3).contains(&x) && y == 2 {
            image::Rgb([255, 255, 255])
        } else {
            image::Rgb([0, 0, 0])
        }
    });
    for o in 1..=8u8 {
        let mut img = DynamicImage::ImageRgb8(stored.clone());
        img.apply_orientation(Orientation::from_exif(o).unwrap());
        let img = img.to_rgb8();
        assert_eq!(img.dimensions(), stored_size(sw, sh, o), "orientation {o}");
        let [x, y, w, h] = stored_rect_to_displayed([1.0, 2.0, 2.0, 1.0], o, 7.0, 4.0);
        let white: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0 == [255, 255, 255])
            .map(|(x, y, _)| (x, y))
            .collect();
        let inside: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(px, py, _)| {
                let (px, py) = (*px as f32 + 0.5, *py as f32 + 0.5);
                px > x && px < x + w && py > y && py < y + h
            })
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(white, inside, "orientation {o}");
    }
}

#[test]
fn the_header_gives_the_displayed_size_and_the_orientation() {
    let jpeg = encode(&rgb_test_image(40, 20), image::ImageFormat::Jpeg);
    let limits = DecodeLimits::default();
    for (o, size) in [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))] {
        let bytes = with_exif_orientation(&jpeg, o);
        let h = probe(Cursor::new(&bytes), &limits).unwrap();
        assert_eq!(
            (h.width, h.height, h.orientation),
            (size.0, size.1, o as u8)
        );
        let (img, applied) = decode_oriented(&bytes, &limits).unwrap();
        assert_eq!((img.dimensions(), applied), (size, o as u8));
    }
}

#[test]
fn a_truncated_jpeg_is_refused_rather_than_filled_with_grey() {
    let limits = DecodeLimits::default();
    let noisy = RgbImage::from_fn(256, 192, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) as u8;
        image::Rgb([v, v.wrapping_mul(3), v ^ 0x5a])
    });
    let jpeg = encode(&DynamicImage::ImageRgb8(noisy), image::ImageFormat::Jpeg);
    check_complete(&jpeg, ImageFormat::Jpeg).unwrap();
    check_complete(&cmyk_jpeg(), ImageFormat::Jpeg).unwrap();
    check_complete(&with_exif_orientation(&jpeg, 6), ImageFormat::Jpeg).unwrap();
    for cut in [jpeg.len() / 3, jpeg.len() / 2, jpeg.len() - 2] {
        match decode(&jpeg[..cut], &limits) {
            Err(ImageError::Corrupt(m)) => assert!(m.contains("truncated"), "{m}"),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Truncated PNG, GIF and WebP are caught by the same structural check.
    let img = rgb_test_image(9, 5);
    let png = encode(&img, image::ImageFormat::Png);
    check_complete(&png, ImageFormat::Png).unwrap();
    assert!(check_complete(&png[..png.len() - 6], ImageFormat::Png).is_err());
    let mut gif = Vec::new();
    image::codecs::gif::GifEncoder::new(&mut gif)
        .encode_frame(image::Frame::new(image::RgbaImage::from_pixel(
            6,
            3,
            image::Rgba([1, 2, 3, 255]),
        )))
        .unwrap();
    // The encoder writes the trailer when dropped.
    check_complete(&gif, ImageFormat::Gif).unwrap();
    assert!(check_complete(&gif[..gif.len() - 1], ImageFormat::Gif).is_err());
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .encode(img.as_bytes(), 9, 5, image::ExtendedColorType::Rgb8)
        .unwrap();
    check_complete(&webp, ImageFormat::WebP).unwrap();
    assert!(check_complete(&webp[..webp.len() - 3], ImageFormat::WebP).is_err());
}

#[test]
fn decoder_memory_limits_are_too_large_not_corrupt() {
    let e = from_image_error(image::ImageError::Limits(
        image::error::LimitError::from_kind(image::error::LimitErrorKind::InsufficientMemory),
    ));
    assert!(matches!(e, ImageError::TooLarge(_)), "{e:?}");
}

#[test]
fn a_gif_frame_larger_than_its_screen_is_named_as_such() {
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        enc.encode_frame(image::Frame::new(image::RgbaImage::from_pixel(
            8,
            8,
            image::Rgba([255, 0, 0, 255]),
        )))
        .unwrap();
    }
    // Logical screen 1x1, and the frame descriptor claims 65535x65535.
    gif[6..10].copy_from_slice(&[1, 0, 1, 0]);
    let at = gif
        .windows(9)
        .position(|w| w == [0x2c, 0, 0, 0, 0, 8, 0, 8, 0])
        .expect("the image descriptor");
    gif[at + 5..at + 9].copy_from_slice(&[0xff; 4]);
    let err = decode(&gif, &DecodeLimits::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        !matches!(err, ImageError::TooManyPixels { .. })
            && (msg.contains("frame") || matches!(err, ImageError::TooLarge(_))),
        "{err:?}"
    );
}

// ---- property tests: any bytes decode or fail with a clear error, never a panic.
// 10,000 cases each.

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn config() -> proptest::test_runner::Config {
        proptest::test_runner::Config {
            cases: 10_000,
            failure_persistence: None,
            ..Default::default()
        }
    }

    /// Small enough that a mutated header cannot make a case slow.
    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 1 << 18,
        max_bytes: 1 << 20,
    };

    fn samples() -> &'static [Vec<u8>] {
        static SAMPLES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        SAMPLES.get_or_init(make_samples)
    }

    fn make_samples() -> Vec<Vec<u8>> {
        let img = rgb_test_image(16, 12);
        let jpeg = encode(&img, image::ImageFormat::Jpeg);
        let mut gif = Vec::new();
        image::codecs::gif::GifEncoder::new(&mut gif)
            .encode_frame(image::Frame::new(img.to_rgba8()))
            .unwrap();
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .encode(img.as_bytes(), 16, 12, image::ExtendedColorType::Rgb8)
            .unwrap();
        vec![
            encode(&img, image::ImageFormat::Png),
            with_exif_orientation(&jpeg, 6),
            jpeg,
            gif,
            webp,
            cmyk_jpeg(),
        ]
    }

    fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
        match decode_oriented(bytes, &LIMITS) {
            Ok((img, o)) => {
                prop_assert!(u64::from(img.width()) * u64::from(img.height()) <= LIMITS.max_pixels);
                prop_assert!((1..=8).contains(&o));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_decode_or_fail_cleanly(
            magic in prop::sample::select(vec![
                &b""[..], b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
                b"RIFF\x10\x00\x00\x00WEBPVP8L",
            ]),
            tail in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut bytes = magic.to_vec();
            bytes.extend(tail);
            check(&bytes)?;
        }

        #[test]
        fn mutated_png_jpeg_gif_webp_decode_or_fail_cleanly(
            which in 0usize..6,
            // Mostly the first 64 bytes: the headers.
            flips in prop::collection::vec((0usize..64, 0usize..4096, any::<u8>()), 1..6),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let mut bytes = samples()[which].clone();
            for (head, anywhere, value) in flips {
                let at = if value % 4 == 0 { anywhere } else { head } % bytes.len();
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            check(&bytes)?;
        }
    }
}

#[test]
fn open_reports_the_path_of_a_missing_file() {
    let err = open(Path::new("/no/such/image.png"), &DecodeLimits::default()).unwrap_err();
    match &err {
        ImageError::Io { path, .. } => assert_eq!(path, Path::new("/no/such/image.png")),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("/no/such/image.png"));
    assert_eq!(err.fault(), crate::Fault::User);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.jpg");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(
        open(&p, &DecodeLimits::default()),
        Err(ImageError::Empty)
    ));
}
