//! [`VectorStore`] for [`EdgeStore`].

use super::*;

impl VectorStore for EdgeStore {
    fn ensure(&self, spec: &CollectionSpec) -> StoreResult<()> {
        let spec = normalize(spec)?;
        let mut state = self.write()?;
        if let Some(open) = state.as_mut() {
            if open.spec == spec {
                return Ok(());
            }
            // A newer imagelens filters on a payload key an older one did not index: the
            // index is added (points without the key simply lack it), nothing else changes.
            let Some((keyword, integer)) = added_fields(&open.spec, &spec) else {
                return Err(StoreError::SpecMismatch {
                    existing: describe(&open.spec),
                    requested: describe(&spec),
                });
            };
            create_payload_indexes(&open.shard, &keyword, &integer)?;
            flush_shard(&open.shard)?;
            write_manifest(
                &self.dir,
                &Manifest {
                    format: FORMAT,
                    generation: open.generation,
                    spec: spec.clone(),
                },
            )?;
            open.spec = spec;
            return Ok(());
        }
        let generation = 0;
        let shard = create_shard(&self.dir, generation, &spec, &self.settings()?, 0)?;
        write_manifest(
            &self.dir,
            &Manifest {
                format: FORMAT,
                generation,
                spec: spec.clone(),
            },
        )?;
        *state = Some(Open {
            spec,
            generation,
            shard,
        });
        Ok(())
    }

    fn collection_spec(&self) -> StoreResult<CollectionSpec> {
        let state = self.read()?;
        Ok(state.as_ref().ok_or(StoreError::Missing)?.spec.clone())
    }

    fn upsert(&self, points: Vec<VectorPoint>) -> StoreResult<()> {
        let state = self.write()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        for point in &points {
            for (name, vector) in &point.vectors {
                check_vector(&open.spec, name, vector)?;
            }
        }
        if points.is_empty() {
            return Ok(());
        }
        let points = points.into_iter().map(to_edge_point).collect();
        update(
            &open.shard,
            UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                PointInsertOperations::PointsList(points),
            )),
        )
    }

    fn search(&self, query: &VectorQuery) -> StoreResult<Vec<Hit>> {
        let state = self.read()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        check_vector(&open.spec, &query.using, &query.vector)?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let settings = self.settings()?;
        let exact = query.exact || settings.kind == IndexKind::Exact;
        let quantization = match settings.quantization {
            // Segments quantized under earlier settings keep their copies until the next
            // optimize: do not use them.
            Quantization::None => Some(QuantizationSearchParams {
                ignore: true,
                rescore: None,
                oversampling: None,
            }),
            // Candidates from the int8 copies, `oversampling` per hit, rescored with the
            // original vectors, so scores (and the top-k of the candidates) are exact cosines.
            Quantization::Int8 => Some(QuantizationSearchParams {
                ignore: exact,
                rescore: Some(true),
                oversampling: Some(settings.oversampling),
            }),
        };
        let request = SearchRequest {
            query: QueryEnum::Nearest(NamedQuery::new(
                VectorInternal::Dense(query.vector.clone()),
                query.using.clone(),
            )),
            filter: to_edge_filter(&query.filter)?,
            params: Some(SearchParams {
                exact,
                // The beam is never narrower than the hits asked for.
                hnsw_ef: Some(settings.ef.max(query.limit)),
                quantization,
                acorn: Some(AcornSearchParams {
                    enable: settings.acorn,
                    max_selectivity: Some(settings.acorn_selectivity.into()),
                }),
                ..SearchParams::default()
            }),
            limit: query.limit,
            offset: 0,
            with_payload: Some(payload_selection(query)?),
            with_vector: Some(WithVector::Bool(false)),
            score_threshold: None,
        };
        let points = open.shard.search(request).map_err(backend)?;
        let mut hits = Vec::with_capacity(points.len());
        for p in points {
            let hit = Hit {
                id: from_edge_id(p.id)?,
                score: p.score,
                payload: to_payload(p.payload),
            };
            // qdrant-edge 0.7.0's graph search can return points outside the filter (seen with
            // a filter no point satisfies, `tests/index_settings.rs`): check every hit here so
            // filters stay exact whatever the index.
            if query.filter.matches(hit.id, &hit.payload) {
                hits.push(hit);
            }
        }
        Ok(hits)
    }

    /// The lists run on threads of their own: qdrant-edge searches a shard's segments one
    /// after the other on the calling thread, so a hybrid search's image, region and text
    /// lists would otherwise wait for each other.
    fn search_many(&self, queries: &[VectorQuery]) -> StoreResult<Vec<Vec<Hit>>> {
        side_by_side(queries, |q| self.search(q))
            .into_iter()
            .collect()
    }

    fn retrieve(&self, ids: &[PointId]) -> StoreResult<Vec<Hit>> {
        let state = self.read()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        let ids: Vec<EdgeId> = ids.iter().map(|&id| EdgeId::NumId(id)).collect();
        let records = open
            .shard
            .retrieve(
                &ids,
                Some(WithPayloadInterface::Bool(true)),
                Some(WithVector::Bool(false)),
            )
            .map_err(backend)?;
        records
            .into_iter()
            .map(|r| {
                Ok(Hit {
                    id: from_edge_id(r.id)?,
                    score: 0.0,
                    payload: to_payload(r.payload),
                })
            })
            .collect()
    }

    /// The stored vector: cosine collections normalize on write, so this is the unit-length
    /// version of what was upserted.
    fn vector(&self, id: PointId, using: &str) -> StoreResult<Option<Vec<f32>>> {
        let state = self.read()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        if !open.spec.vectors.iter().any(|v| v == using) {
            return Err(StoreError::UnknownVector(using.to_owned()));
        }
        let records = open
            .shard
            .retrieve(
                &[EdgeId::NumId(id)],
                Some(WithPayloadInterface::Bool(false)),
                Some(WithVector::Selector(vec![using.to_owned()])),
            )
            .map_err(backend)?;
        Ok(records
            .into_iter()
            .next()
            .and_then(|r| r.vector)
            .and_then(|v| dense(v, using)))
    }

    fn delete(&self, ids: &[PointId]) -> StoreResult<()> {
        let state = self.write()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.iter().map(|&id| EdgeId::NumId(id)).collect();
        update(
            &open.shard,
            UpdateOperation::PointOperation(PointOperations::DeletePoints { ids }),
        )
    }

    fn delete_where(&self, filter: &VectorFilter) -> StoreResult<()> {
        if filter.is_empty() {
            return Err(StoreError::Backend(
                "refusing to delete with an empty filter".into(),
            ));
        }
        let state = self.write()?;
        let open = state.as_ref().ok_or(StoreError::Missing)?;
        let filter = to_edge_filter(filter)?.expect("a non-empty filter translates to Some");
        update(
            &open.shard,
            UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter)),
        )
    }

    /// Exact count; 0 before [`VectorStore::ensure`].
    fn count(&self, filter: &VectorFilter) -> StoreResult<usize> {
        let state = self.read()?;
        let Some(open) = state.as_ref() else {
            return Ok(0);
        };
        let request = CountRequest {
            filter: to_edge_filter(filter)?,
            exact: true,
        };
        open.shard.count(request).map_err(backend)
    }

    /// Pages through every point with a payload selector of `key`. String values count, and so
    /// do the string elements of an array value (e.g. each of `labels`); other values are
    /// ignored. Empty before [`VectorStore::ensure`].
    fn distinct(&self, key: &str) -> StoreResult<BTreeSet<String>> {
        let state = self.read()?;
        let Some(open) = state.as_ref() else {
            return Ok(BTreeSet::new());
        };
        let path = json_path(key)?;
        let mut values = BTreeSet::new();
        let mut offset = None;
        loop {
            let request = ScrollRequest {
                offset,
                limit: Some(PAGE),
                filter: None,
                with_payload: Some(WithPayloadInterface::Fields(vec![path.clone()])),
                with_vector: WithVector::Bool(false),
                order_by: None,
            };
            let (records, next) = open.shard.scroll(request).map_err(backend)?;
            for record in records {
                match record.payload.as_ref().and_then(|p| p.0.get(key)) {
                    Some(Value::String(s)) => {
                        values.insert(s.clone());
                    }
                    Some(Value::Array(items)) => {
                        values.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)));
                    }
                    _ => {}
                }
            }
            match next {
                Some(next) => offset = Some(next),
                None => return Ok(values),
            }
        }
    }

    /// Fsyncs the WAL and flushes every segment; a no-op before [`VectorStore::ensure`].
    fn flush(&self) -> StoreResult<()> {
        let state = self.write()?;
        match state.as_ref() {
            Some(open) => flush_shard(&open.shard),
            None => Ok(()),
        }
    }

    /// Runs qdrant's optimizers in-process until they have nothing left to do (segments above
    /// the indexing threshold get an HNSW graph, small ones are merged, ones with deletions
    /// vacuumed), then flushes. Searches keep answering meanwhile; an interrupted run leaves
    /// segment directories without `version.info`, which the next open discards.
    fn optimize(&self) -> StoreResult<()> {
        {
            let mut state = self.write()?;
            let settings = self.settings()?;
            self.apply(&mut state, &settings)?;
            if let Some(open) = state.as_ref() {
                let rebuilt = align_range_field_links(&open.shard, &open.spec.integer_fields)?;
                if !rebuilt.is_empty() {
                    tracing::info!(
                        fields = ?rebuilt,
                        "date indexes rebuilt without payload-aware graph links"
                    );
                    flush_shard(&open.shard)?;
                }
            }
        }
        let state = self.read()?;
        let Some(open) = state.as_ref() else {
            return Ok(());
        };
        open.shard.optimize().map_err(backend)?;
        flush_shard(&open.shard)
    }

    fn index_settings(&self) -> StoreResult<IndexSettings> {
        self.settings()
    }

    /// Saves `settings` in `index.json` and applies them to the live shard's config; the next
    /// [`VectorStore::optimize`] builds (or drops) graphs and quantized copies to match.
    fn set_index_settings(&self, settings: &IndexSettings) -> StoreResult<()> {
        settings.validate()?;
        let mut state = self.write()?;
        write_index_settings(&self.dir, settings)?;
        *self.settings.write().map_err(|_| poisoned())? = settings.clone();
        self.apply(&mut state, settings)
    }

    fn index_state(&self) -> StoreResult<IndexState> {
        let settings = self.settings()?;
        let state = self.read()?;
        let (points, indexed_vectors, segments, full_scan_kb) =
            state.as_ref().map_or((0, 0, 0, Vec::new()), |open| {
                let info = open.shard.info();
                (
                    info.points_count,
                    info.indexed_vectors_count,
                    info.segments_count,
                    vec![open.shard.config().hnsw_config.full_scan_threshold],
                )
            });
        Ok(IndexState {
            settings: Some(settings),
            points,
            indexed_vectors,
            segments,
            disk_bytes: Some(disk_usage(&self.dir)?),
            full_scan_kb,
        })
    }

    /// Rewrites the collection into a fresh shard generation holding only live points (with the
    /// store's index settings), runs the optimizer on it (merging, and HNSW graphs where
    /// the indexing threshold asks for them), commits it and deletes the old generation. See
    /// the module docs for why an in-place vacuum is not enough in qdrant-edge 0.7.0.
    fn compact(&self) -> StoreResult<()> {
        let mut state = self.write()?;
        let Some(open) = state.as_ref() else {
            return Ok(());
        };
        let generation = open.generation + 1;
        let settings = self.settings()?;
        // Configured for the live points it is about to hold, so its graphs get the full-scan
        // threshold `optimize` would give them.
        let live = open.shard.info().points_count;
        let fresh = create_shard(&self.dir, generation, &open.spec, &settings, live)?;
        copy_points(&open.shard, &fresh)?;
        fresh.optimize().map_err(backend)?;
        flush_shard(&fresh)?;
        write_manifest(
            &self.dir,
            &Manifest {
                format: FORMAT,
                generation,
                spec: open.spec.clone(),
            },
        )?;
        let old = state.take().expect("checked above");
        let old_path = shard_dir(&self.dir, old.generation);
        *state = Some(Open {
            spec: old.spec,
            generation,
            shard: fresh,
        });
        drop(old.shard);
        fs::remove_dir_all(&old_path)?;
        sync_dir(&self.dir)?;
        Ok(())
    }
}

/// The payload a search returns: all of it, or the keys [`VectorQuery::returned_keys`] names.
fn payload_selection(query: &VectorQuery) -> StoreResult<WithPayloadInterface> {
    Ok(match query.returned_keys() {
        None => WithPayloadInterface::Bool(true),
        Some(keys) => WithPayloadInterface::Fields(
            keys.iter()
                .map(|k| {
                    k.parse::<qdrant_edge::JsonPath>()
                        .map_err(|()| StoreError::Backend(format!("payload key {k:?}")))
                })
                .collect::<StoreResult<_>>()?,
        ),
    })
}
