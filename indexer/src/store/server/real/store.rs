//! [`VectorStore`] for [`ServerStore`].

use super::*;

impl VectorStore for ServerStore {
    fn ensure(&self, spec: &CollectionSpec) -> StoreResult<()> {
        let spec = normalize(spec)?;
        let mut known = self.spec.write().map_err(|_| poisoned())?;
        if known.is_none()
            && let Some((existing, index)) = self.read_collection()?
        {
            *known = Some(existing);
            *self.index.write().map_err(|_| poisoned())? = index;
        }
        if let Some(existing) = known.as_ref() {
            if *existing == spec {
                return Ok(());
            }
            // A newer imagelens filters on a payload key an older one did not index: the
            // index is added, nothing else changes.
            let Some((keyword, integer)) = added_fields(existing, &spec) else {
                return Err(StoreError::SpecMismatch {
                    existing: describe(existing),
                    requested: describe(&spec),
                });
            };
            self.create_field_indexes(&keyword, &integer)?;
            *known = Some(spec);
            return Ok(());
        }
        let mut vectors = VectorsConfigBuilder::default();
        let settings = self.index()?;
        for name in &spec.vectors {
            vectors.add_named_vector_params(name, Self::vector_params(spec.dim, settings.on_disk));
        }
        let (hnsw, optimizers, int8) = Self::index_config(&spec, &settings);
        let mut create = CreateCollectionBuilder::new(&self.collection)
            .vectors_config(vectors)
            .hnsw_config(hnsw)
            .optimizers_config(optimizers)
            .timeout(self.options.deadline().as_secs().max(1));
        if let Some(int8) = int8 {
            create = create.quantization_config(quantization_config::Quantization::Scalar(int8));
        }
        if let Some(n) = self.options.shard_number {
            create = create.shard_number(n);
        }
        if let Some(n) = self.options.replication_factor {
            create = create.replication_factor(n);
        }
        if let Some(n) = self.options.write_consistency_factor {
            create = create.write_consistency_factor(n);
        }
        let mut create = create.build();
        create.metadata = Self::index_metadata(&settings)?;
        self.block_on(self.client.create_collection(create))?;
        self.create_field_indexes(&spec.keyword_fields, &spec.integer_fields)?;
        *known = Some(spec);
        Ok(())
    }

    fn collection_spec(&self) -> StoreResult<CollectionSpec> {
        self.spec()
    }

    fn upsert(&self, points: Vec<VectorPoint>) -> StoreResult<()> {
        let spec = self.spec()?;
        for point in &points {
            for (name, vector) in &point.vectors {
                check_vector(&spec, name, vector)?;
            }
        }
        let mut points = points.into_iter().map(|p| {
            let vectors: HashMap<String, Vec<f32>> = p.vectors.into_iter().collect();
            let payload: HashMap<String, qdrant::Value> = p
                .payload
                .0
                .into_iter()
                .map(|(k, v)| (k, to_value(v)))
                .collect();
            PointStruct::new(p.id, vectors, qdrant_client::Payload::from(payload))
        });
        loop {
            let batch: Vec<PointStruct> = points.by_ref().take(UPSERT_BATCH).collect();
            if batch.is_empty() {
                return Ok(());
            }
            self.changed.store(true, Ordering::Relaxed);
            self.block_on(
                self.client
                    .upsert_points(UpsertPointsBuilder::new(&self.collection, batch).wait(true)),
            )?;
        }
    }

    fn search(&self, query: &VectorQuery) -> StoreResult<Vec<Hit>> {
        let spec = self.spec()?;
        check_vector(&spec, &query.using, &query.vector)?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let settings = self.index()?;
        let response = self.block_on(self.client.query(self.query_points(query, &settings)))?;
        hits(response.result, &query.filter)
    }

    /// One `QueryBatch` request for every list (the server runs them side by side).
    fn search_many(&self, queries: &[VectorQuery]) -> StoreResult<Vec<Vec<Hit>>> {
        let spec = self.spec()?;
        for query in queries {
            check_vector(&spec, &query.using, &query.vector)?;
        }
        // Empty answers for limit 0, without asking (the server refuses a zero limit).
        let asked: Vec<usize> = (0..queries.len())
            .filter(|&i| queries[i].limit > 0)
            .collect();
        let mut lists = vec![Vec::new(); queries.len()];
        if asked.is_empty() {
            return Ok(lists);
        }
        let settings = self.index()?;
        let requests: Vec<qdrant::QueryPoints> = asked
            .iter()
            .map(|&i| self.query_points(&queries[i], &settings))
            .collect();
        let response = self.block_on(
            self.client
                .query_batch(QueryBatchPointsBuilder::new(&self.collection, requests)),
        )?;
        if response.result.len() != asked.len() {
            return Err(StoreError::Backend(format!(
                "asked {} lists in one batch, got {}",
                asked.len(),
                response.result.len()
            )));
        }
        for (i, batch) in asked.into_iter().zip(response.result) {
            lists[i] = hits(batch.result, &queries[i].filter)?;
        }
        Ok(lists)
    }

    fn retrieve(&self, ids: &[PointId]) -> StoreResult<Vec<Hit>> {
        self.spec()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<qdrant::PointId> = ids.iter().map(|&id| id.into()).collect();
        let response = self.block_on(
            self.client
                .get_points(GetPointsBuilder::new(&self.collection, ids).with_payload(true)),
        )?;
        response
            .result
            .into_iter()
            .map(|p| {
                Ok(Hit {
                    id: from_id(p.id)?,
                    score: 0.0,
                    payload: to_payload(p.payload),
                })
            })
            .collect()
    }

    fn vector(&self, id: PointId, using: &str) -> StoreResult<Option<Vec<f32>>> {
        let spec = self.spec()?;
        if !spec.vectors.iter().any(|v| v == using) {
            return Err(StoreError::UnknownVector(using.to_owned()));
        }
        let response = self.block_on(
            self.client.get_points(
                GetPointsBuilder::new(&self.collection, vec![id.into()])
                    .with_payload(false)
                    .with_vectors(VectorsSelector {
                        names: vec![using.to_owned()],
                    }),
            ),
        )?;
        let Some(point) = response.result.into_iter().next() else {
            return Ok(None);
        };
        let output = match point.vectors.and_then(|v| v.vectors_options) {
            Some(vectors_output::VectorsOptions::Vectors(mut named)) => named.vectors.remove(using),
            Some(vectors_output::VectorsOptions::Vector(single)) => Some(single),
            None => None,
        };
        Ok(output.and_then(|v| match v.into_vector() {
            vector_output::Vector::Dense(dense) => Some(dense.data),
            _ => None,
        }))
    }

    fn delete(&self, ids: &[PointId]) -> StoreResult<()> {
        self.spec()?;
        if ids.is_empty() {
            return Ok(());
        }
        let ids = PointsIdsList {
            ids: ids.iter().map(|&id| id.into()).collect(),
        };
        self.changed.store(true, Ordering::Relaxed);
        self.block_on(
            self.client.delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(ids)
                    .ordering(ordered())
                    .wait(true),
            ),
        )?;
        Ok(())
    }

    fn delete_where(&self, filter: &VectorFilter) -> StoreResult<()> {
        let Some(filter) = to_filter(filter) else {
            return Err(StoreError::Backend(
                "refusing to delete with an empty filter".into(),
            ));
        };
        self.spec()?;
        self.changed.store(true, Ordering::Relaxed);
        self.block_on(
            self.client.delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .ordering(ordered())
                    .wait(true),
            ),
        )?;
        Ok(())
    }

    fn count(&self, filter: &VectorFilter) -> StoreResult<usize> {
        if !self.has_spec()? {
            return Ok(0);
        }
        let mut request = CountPointsBuilder::new(&self.collection).exact(true);
        if let Some(filter) = to_filter(filter) {
            request = request.filter(filter);
        }
        let count = self
            .block_on(self.client.count(request))?
            .result
            .map_or(0, |r| r.count);
        usize::try_from(count).map_err(backend)
    }

    fn distinct(&self, key: &str) -> StoreResult<BTreeSet<String>> {
        let mut values = BTreeSet::new();
        if !self.has_spec()? {
            return Ok(values);
        }
        let mut offset: Option<qdrant::PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection)
                .limit(PAGE)
                .with_payload(PayloadIncludeSelector {
                    fields: vec![key.to_owned()],
                });
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let response = self.block_on(self.client.scroll(request))?;
            for point in response.result {
                match point.payload.get(key).map(|v| from_value(v.clone())) {
                    Some(Value::String(s)) => {
                        values.insert(s);
                    }
                    Some(Value::Array(items)) => values.extend(
                        items
                            .into_iter()
                            .filter_map(|v| v.as_str().map(str::to_owned)),
                    ),
                    _ => {}
                }
            }
            match response.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(values),
            }
        }
    }

    /// A no-op: every write already waited for the server to apply it and log it in its WAL,
    /// which the server replays after a crash.
    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Waits until the server's background optimizers are done with the collection
    /// (status green: segments merged, HNSW graphs and int8 copies built as the index
    /// settings ask), for at most the request deadline; past it the answer is
    /// [`StoreError::StillOptimizing`] (the collection answers correctly meanwhile, so a
    /// caller may go on and say so). After this store changed the collection, a
    /// green status counts only once the optimizers have visibly started (a status other
    /// than green) or it stayed green for a second. A collection whose optimizations are
    /// pending but not started (status grey, e.g. after a server restart) is nudged with an
    /// empty update, which is how Qdrant starts them.
    ///
    /// First, a date index made with payload-aware graph links (a collection made before
    /// [`crate::store::RANGE_FIELD_LINKS`]) is rebuilt without them, as the embedded
    /// store's optimize does, and named vectors kept other than [`IndexSettings::on_disk`]
    /// says (in RAM: a collection made before imagelens asked for on-disk vectors) are moved;
    /// the wait below covers the segments the server rewrites for it.
    fn optimize(&self) -> StoreResult<()> {
        if !self.has_spec()? {
            return Ok(());
        }
        if let Some(info) = self.info()? {
            let rebuilt = self.align_range_field_links(&info)?;
            if !rebuilt.is_empty() {
                tracing::info!(
                    collection = %self.collection,
                    fields = ?rebuilt,
                    "date indexes rebuilt without payload-aware graph links"
                );
                self.changed.store(true, Ordering::Relaxed);
            }
            let on_disk = self.index()?.on_disk;
            let moved = self.place_vectors(&info, on_disk)?;
            if !moved.is_empty() {
                tracing::info!(
                    collection = %self.collection,
                    vectors = ?moved,
                    on_disk,
                    "full vectors moved (int8 copies stay in RAM)"
                );
                self.changed.store(true, Ordering::Relaxed);
            }
        }
        let start = Instant::now();
        let until = start + self.options.deadline();
        let mut settled = !self.changed.swap(false, Ordering::Relaxed);
        let mut green_since: Option<Instant> = None;
        let mut nudged = false;
        loop {
            let info = self
                .block_on(self.client.collection_info(&self.collection))?
                .result
                .ok_or_else(|| StoreError::Backend("collection info is empty".into()))?;
            let now = Instant::now();
            if info.status == CollectionStatus::Green as i32 {
                let since = *green_since.get_or_insert(now);
                if settled || now.duration_since(since) >= SETTLE {
                    return Ok(());
                }
            } else {
                settled = true;
                green_since = None;
            }
            if now >= until {
                return Err(StoreError::StillOptimizing {
                    status: CollectionStatus::try_from(info.status)
                        .map_or("unknown", |s| s.as_str_name())
                        .to_ascii_lowercase(),
                    waited_secs: now.duration_since(start).as_secs_f32(),
                });
            }
            if info.status == CollectionStatus::Grey as i32 && !nudged {
                nudged = true;
                self.block_on(self.client.update_collection(UpdateCollection {
                    collection_name: self.collection.clone(),
                    optimizers_config: Some(OptimizersConfigDiff::default()),
                    ..UpdateCollection::default()
                }))?;
            }
            std::thread::sleep(OPTIMIZE_POLL);
        }
    }

    /// The settings read from the collection when this store connected or last changed
    /// them (the defaults a new collection gets, before it exists). Another process's
    /// change is seen after a reconnect; until then searches use the older search-time
    /// values, which changes their speed, not their correctness (filters stay exact,
    /// scores are rescored cosines).
    fn index_settings(&self) -> StoreResult<IndexSettings> {
        self.index()
    }

    /// Checks `settings`, then changes the collection in one update request: HNSW `m`,
    /// `ef_construct` and `full_scan_threshold`, the optimizer's `indexing_threshold`
    /// (0 = never build a graph, for exact; 1 KiB = every segment, for hnsw; the auto
    /// threshold's vector data otherwise), int8 scalar quantization (quantile 0.99, in
    /// RAM) or `Disabled`, and the settings themselves in the collection's metadata under
    /// [`INDEX_METADATA_KEY`], where a reconnecting process reads them back. The server's
    /// optimizers rebuild graphs and quantized copies in the background; [`Self::optimize`]
    /// waits for them. Invalid settings are refused before anything is sent. Before the
    /// collection exists they are kept here and given to the collection `ensure` creates.
    fn set_index_settings(&self, settings: &IndexSettings) -> StoreResult<()> {
        settings.validate()?;
        if settings.full_scan_share != 0.0 {
            return Err(StoreError::Backend(format!(
                "collection {:?}: full_scan_share {} is applied by the embedded store only; a \
                 Qdrant server collection keeps the full_scan_kb it is given (set \
                 full_scan_share to 0)",
                self.collection, settings.full_scan_share
            )));
        }
        let spec = self.spec.read().map_err(|_| poisoned())?.clone();
        let Some(spec) = spec else {
            *self.index.write().map_err(|_| poisoned())? = settings.clone();
            return Ok(());
        };
        let (hnsw, optimizers, int8) = Self::index_config(&spec, settings);
        let quantization = match int8 {
            Some(int8) => quantization_config_diff::Quantization::Scalar(int8),
            None => quantization_config_diff::Quantization::Disabled(qdrant::Disabled {}),
        };
        let mut index = self.index.write().map_err(|_| poisoned())?;
        self.changed.store(true, Ordering::Relaxed);
        self.block_on(self.client.update_collection(UpdateCollection {
            collection_name: self.collection.clone(),
            optimizers_config: Some(optimizers),
            timeout: Some(self.options.deadline().as_secs().max(1)),
            hnsw_config: Some(hnsw),
            quantization_config: Some(qdrant::QuantizationConfigDiff {
                quantization: Some(quantization),
            }),
            metadata: Self::index_metadata(settings)?,
            ..UpdateCollection::default()
        }))?;
        *index = settings.clone();
        Ok(())
    }

    /// Points, graph-indexed vectors (over every named vector) and segments from the
    /// collection info; disk use is unknown (the server's API does not report it).
    fn index_state(&self) -> StoreResult<IndexState> {
        let settings = self.index()?;
        if !self.has_spec()? {
            return Ok(IndexState {
                settings: Some(settings),
                ..IndexState::default()
            });
        }
        let info = self.info()?.ok_or(StoreError::Missing)?;
        let number = |v: u64| usize::try_from(v).map_err(backend);
        Ok(IndexState {
            points: number(info.points_count.unwrap_or(0))?,
            indexed_vectors: number(info.indexed_vectors_count.unwrap_or(0))?,
            segments: number(info.segments_count)?,
            disk_bytes: None,
            full_scan_kb: vec![settings.full_scan_kb],
            settings: Some(settings),
        })
    }

    /// A no-op: the server's own optimizers vacuum segments in the background according to
    /// the collection's optimizer config; the API offers no synchronous purge. Deleted points
    /// are gone from every answer as soon as the deletion returns.
    fn compact(&self) -> StoreResult<()> {
        Ok(())
    }
}
