//! Polygon outlines of annotations (COCO `segmentation` polygons, CVAT and Label Studio
//! polygons, YOLO segment rows, Clarifai region polygons): read from an export's points in
//! pixels, turned with the image's EXIF orientation and clipped to the image as their boxes
//! are ([`super::validate_boxes`]).
//!
//! A polygon is kept beside its box, never instead of it: the box (the rectangle around the
//! outline) is what ranking, region crops and redaction use, so a face outlined by a polygon
//! is blurred over its whole box.

/// Most points one outline may have; a longer one leaves its box without the outline
/// (reported).
pub const MAX_POINTS: usize = 10_000;

/// Most outlines one box may have (a COCO object occluded into parts has several).
pub const MAX_RINGS: usize = 64;

/// An outline from an export's points in pixels: at least three points, every coordinate
/// finite, at most [`MAX_POINTS`], enclosing some area. `None` otherwise.
pub fn ring(points: &[(f64, f64)]) -> Option<Vec<[f32; 2]>> {
    if points.len() < 3 || points.len() > MAX_POINTS {
        return None;
    }
    let ring: Vec<[f32; 2]> = points.iter().map(|&(x, y)| [x as f32, y as f32]).collect();
    (ring.iter().flatten().all(|v| v.is_finite()) && area(&ring) > 0.0).then_some(ring)
}

/// The outlines in a flat list of coordinates per outline (`[x1, y1, x2, y2, ...]`, COCO's
/// `segmentation` and YOLO's segment rows), each scaled by `(sx, sy)`. `None` when any outline
/// is not one ([`ring`]) or there are more than [`MAX_RINGS`].
pub fn rings_of_flat(flat: &[Vec<f64>], sx: f64, sy: f64) -> Option<Vec<Vec<[f32; 2]>>> {
    if flat.is_empty() || flat.len() > MAX_RINGS {
        return None;
    }
    flat.iter()
        .map(|coords| {
            if coords.len() % 2 != 0 {
                return None;
            }
            let points: Vec<(f64, f64)> =
                coords.chunks(2).map(|p| (p[0] * sx, p[1] * sy)).collect();
            ring(&points)
        })
        .collect()
}

/// The area an outline encloses (shoelace formula; self-crossing outlines count their lobes
/// with signs, as COCO's own area does not, which is why a stated area wins).
pub fn area(ring: &[[f32; 2]]) -> f32 {
    let n = ring.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let [x0, y0] = ring[i];
            let [x1, y1] = ring[(i + 1) % n];
            f64::from(x0) * f64::from(y1) - f64::from(x1) * f64::from(y0)
        })
        .sum();
    (twice.abs() / 2.0) as f32
}

/// The part of an outline inside the `width` x `height` image (Sutherland-Hodgman against the
/// four edges), `None` when nothing with an area is left. An outline already inside is
/// returned unchanged, point for point.
pub fn clip(ring: &[[f32; 2]], width: f32, height: f32) -> Option<Vec<[f32; 2]>> {
    let inside = |p: &[f32; 2]| p[0] >= 0.0 && p[1] >= 0.0 && p[0] <= width && p[1] <= height;
    if ring.iter().all(inside) {
        return (ring.len() >= 3 && area(ring) > 0.0).then(|| ring.to_vec());
    }
    // Each edge as (is the point on the kept side, where the segment a-b crosses the edge).
    type Keep = fn(&[f32; 2], f32) -> bool;
    type Cross = fn(&[f32; 2], &[f32; 2], f32) -> [f32; 2];
    let at_x = |a: &[f32; 2], b: &[f32; 2], x: f32| {
        let t = (x - a[0]) / (b[0] - a[0]);
        [x, a[1] + t * (b[1] - a[1])]
    };
    let at_y = |a: &[f32; 2], b: &[f32; 2], y: f32| {
        let t = (y - a[1]) / (b[1] - a[1]);
        [a[0] + t * (b[0] - a[0]), y]
    };
    let edges: [(Keep, Cross, f32); 4] = [
        (|p, e| p[0] >= e, at_x, 0.0),
        (|p, e| p[0] <= e, at_x, width),
        (|p, e| p[1] >= e, at_y, 0.0),
        (|p, e| p[1] <= e, at_y, height),
    ];
    let mut out = ring.to_vec();
    for (keep, cross, e) in edges {
        let input = std::mem::take(&mut out);
        let Some(mut prev) = input.last().copied() else {
            break;
        };
        for p in input {
            match (keep(&p, e), keep(&prev, e)) {
                (true, true) => out.push(p),
                (true, false) => {
                    out.push(cross(&prev, &p, e));
                    out.push(p);
                }
                (false, true) => out.push(cross(&prev, &p, e)),
                (false, false) => {}
            }
            prev = p;
        }
    }
    out.dedup();
    (out.len() >= 3 && area(&out) > 0.0).then_some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_ring_needs_three_finite_points_and_an_area() {
        let tri = [(0.0, 0.0), (4.0, 0.0), (0.0, 3.0)];
        assert_eq!(ring(&tri).unwrap(), [[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]]);
        assert_eq!(area(&ring(&tri).unwrap()), 6.0);
        assert!(ring(&tri[..2]).is_none());
        assert!(
            ring(&[(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)]).is_none(),
            "a line"
        );
        assert!(ring(&[(0.0, 0.0), (f64::NAN, 1.0), (2.0, 0.0)]).is_none());
        let long: Vec<(f64, f64)> = (0..=MAX_POINTS)
            .map(|i| {
                let a = i as f64 / MAX_POINTS as f64 * std::f64::consts::TAU;
                (a.cos(), a.sin())
            })
            .collect();
        assert!(ring(&long).is_none());
        assert!(ring(&long[..MAX_POINTS]).is_some());
    }

    #[test]
    fn flat_coordinates_become_scaled_rings_or_nothing() {
        let flat = vec![
            vec![0.1, 0.1, 0.5, 0.1, 0.5, 0.5],
            vec![0.6, 0.6, 0.9, 0.6, 0.9, 0.9],
        ];
        let rings = rings_of_flat(&flat, 100.0, 10.0).unwrap();
        assert_eq!(rings[0], [[10.0, 1.0], [50.0, 1.0], [50.0, 5.0]]);
        assert_eq!(rings.len(), 2);
        assert!(
            rings_of_flat(&[vec![0.1, 0.1, 0.5]], 1.0, 1.0).is_none(),
            "odd"
        );
        assert!(rings_of_flat(&[], 1.0, 1.0).is_none());
        let many = vec![vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0]; MAX_RINGS + 1];
        assert!(rings_of_flat(&many, 1.0, 1.0).is_none());
    }

    #[test]
    fn clipping_keeps_the_part_inside_the_image() {
        // A square half past the right edge of a 10x10 image.
        let sq = [[5.0, 2.0], [15.0, 2.0], [15.0, 8.0], [5.0, 8.0]];
        let c = clip(&sq, 10.0, 10.0).unwrap();
        assert_eq!(area(&c), 30.0);
        assert!(c.iter().all(|p| p[0] <= 10.0));
        // Inside: unchanged. Outside: nothing.
        let inside = [[1.0, 1.0], [3.0, 1.0], [2.0, 4.0]];
        assert_eq!(clip(&inside, 10.0, 10.0).unwrap(), inside);
        assert!(clip(&[[11.0, 1.0], [13.0, 1.0], [12.0, 4.0]], 10.0, 10.0).is_none());
    }

    proptest! {
        /// Whatever the outline (self-crossing ones too), what clipping keeps lies in the image.
        #[test]
        fn a_clipped_ring_lies_in_the_image(
            pts in prop::collection::vec((-50.0f32..150.0, -50.0f32..150.0), 3..12),
        ) {
            let ring: Vec<[f32; 2]> = pts.iter().map(|&(x, y)| [x, y]).collect();
            if let Some(c) = clip(&ring, 100.0, 80.0) {
                for p in &c {
                    prop_assert!(p[0] >= -1e-3 && p[0] <= 100.001 && p[1] >= -1e-3 && p[1] <= 80.001, "{p:?}");
                }
                prop_assert!(c.len() >= 3);
            }
        }

        /// A simple outline (points in order of their angle about a centre) keeps no more area
        /// than it had nor than the image has, and all of it when it lies inside.
        #[test]
        fn a_clipped_simple_ring_keeps_at_most_its_area(
            centre in (-20.0f32..120.0, -20.0f32..100.0),
            spokes in prop::collection::vec((0.0f32..0.9, 1.0f32..60.0), 5..12),
        ) {
            // Angles spread round the centre (no gap of half a turn): the outline is simple.
            let n = spokes.len() as f32;
            let ring: Vec<[f32; 2]> = spokes
                .iter()
                .enumerate()
                .map(|(i, &(jitter, r))| {
                    let a = (i as f32 + jitter) * std::f32::consts::TAU / n;
                    [centre.0 + r * a.cos(), centre.1 + r * a.sin()]
                })
                .collect();
            let whole = area(&ring);
            match clip(&ring, 100.0, 80.0) {
                Some(c) => {
                    let kept = area(&c);
                    prop_assert!(kept <= whole * 1.0001 + 1e-2, "{kept} > {whole}");
                    prop_assert!(kept <= 100.0 * 80.0 + 1e-2);
                }
                None => {
                    let inside = ring
                        .iter()
                        .all(|p| p[0] >= 0.0 && p[1] >= 0.0 && p[0] <= 100.0 && p[1] <= 80.0);
                    prop_assert!(!inside || whole == 0.0, "an outline inside was dropped");
                }
            }
        }
    }
}
