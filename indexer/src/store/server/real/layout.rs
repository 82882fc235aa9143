//! The collection's layout on the server: the spec and index settings read back from the
//! collection's config, payload indexes made (and the date indexes' graph links aligned), and
//! the config and metadata written for a set of [`IndexSettings`].

use super::*;

impl ServerStore {
    pub(super) fn spec(&self) -> StoreResult<CollectionSpec> {
        self.spec
            .read()
            .map_err(|_| poisoned())?
            .clone()
            .ok_or(StoreError::Missing)
    }

    pub(super) fn has_spec(&self) -> StoreResult<bool> {
        Ok(self.spec.read().map_err(|_| poisoned())?.is_some())
    }

    /// The collection's info; `None` when it does not exist.
    pub(super) fn info(&self) -> StoreResult<Option<CollectionInfo>> {
        if !self.block_on(self.client.collection_exists(&self.collection))? {
            return Ok(None);
        }
        self.block_on(self.client.collection_info(&self.collection))?
            .result
            .map(Some)
            .ok_or_else(|| StoreError::Backend("collection info is empty".into()))
    }

    /// Builds a payload index on each of these keyword and integer fields, waiting for each;
    /// integer fields without payload-aware graph links, as the embedded store builds them
    /// ([`crate::store::RANGE_FIELD_LINKS`]).
    pub(super) fn create_field_indexes(
        &self,
        keyword: &[String],
        integer: &[String],
    ) -> StoreResult<()> {
        for field in keyword {
            self.block_on(
                self.client.create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        &self.collection,
                        field,
                        FieldType::Keyword,
                    )
                    .wait(true),
                ),
            )?;
        }
        for field in integer {
            let params = IntegerIndexParamsBuilder::new(true, true)
                .enable_hnsw(crate::store::RANGE_FIELD_LINKS);
            self.block_on(
                self.client.create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        &self.collection,
                        field,
                        FieldType::Integer,
                    )
                    .field_index_params(params)
                    .wait(true),
                ),
            )?;
        }
        Ok(())
    }

    /// Rebuilds each integer (date) index of the collection whose payload-aware graph links
    /// differ from [`crate::store::RANGE_FIELD_LINKS`] (a collection made before imagelens
    /// named them has qdrant's default, links on): dropped and created again with the
    /// constant's params, waiting for each. Returns the fields rebuilt. Graphs the server
    /// already built keep their extra links until the optimizers rebuild their segment;
    /// filters stay exact throughout (a field without an index is filtered by its values).
    pub(super) fn align_range_field_links(
        &self,
        info: &CollectionInfo,
    ) -> StoreResult<Vec<String>> {
        let mut rebuilt = Vec::new();
        for (field, schema) in &info.payload_schema {
            if schema.data_type != PayloadSchemaType::Integer as i32 {
                continue;
            }
            let links = match schema.params.as_ref().and_then(|p| p.index_params.as_ref()) {
                Some(payload_index_params::IndexParams::IntegerIndexParams(params)) => {
                    params.enable_hnsw.unwrap_or(true)
                }
                _ => true,
            };
            if links == crate::store::RANGE_FIELD_LINKS {
                continue;
            }
            self.block_on(self.client.delete_field_index(
                DeleteFieldIndexCollectionBuilder::new(&self.collection, field).wait(true),
            ))?;
            self.create_field_indexes(&[], std::slice::from_ref(field))?;
            rebuilt.push(field.clone());
        }
        rebuilt.sort();
        Ok(rebuilt)
    }

    /// The params of one named vector of a new collection: `dim` floats, cosine, the full
    /// vectors on disk (memory-mapped) or in RAM as [`IndexSettings::on_disk`] says (the int8
    /// copies, when the index settings ask for them, stay in RAM either way).
    #[allow(deprecated)] // `on_disk`: the 1.18 server does not know its successor `memory`.
    pub(super) fn vector_params(dim: usize, on_disk: bool) -> VectorParamsBuilder {
        VectorParamsBuilder::new(dim as u64, Distance::Cosine).on_disk(on_disk)
    }

    /// Moves each named vector of the collection whose full vectors are kept the other way
    /// (a collection made before imagelens asked for on-disk vectors, one whose settings
    /// changed, or one changed by another client) to disk (`on_disk`) or to RAM, in one update.
    /// Qdrant accepts `on_disk` in an update of an existing vector; its optimizers then
    /// rewrite the segments whose storage differs from the config, in the background, every
    /// point answering meanwhile. Returns the vectors moved.
    #[allow(deprecated)] // `on_disk`: the 1.18 server does not know its successor `memory`.
    pub(super) fn place_vectors(
        &self,
        info: &CollectionInfo,
        on_disk: bool,
    ) -> StoreResult<Vec<String>> {
        let params = info
            .config
            .as_ref()
            .and_then(|c| c.params.as_ref())
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref());
        let Some(vectors_config::Config::ParamsMap(map)) = params else {
            return Ok(Vec::new());
        };
        let mut moved: Vec<String> = map
            .map
            .iter()
            .filter(|(_, params)| params.on_disk.unwrap_or(false) != on_disk)
            .map(|(name, _)| name.clone())
            .collect();
        if moved.is_empty() {
            return Ok(moved);
        }
        moved.sort();
        let diff = moved
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    qdrant::VectorParamsDiff {
                        on_disk: Some(on_disk),
                        ..qdrant::VectorParamsDiff::default()
                    },
                )
            })
            .collect();
        self.block_on(self.client.update_collection(UpdateCollection {
            collection_name: self.collection.clone(),
            vectors_config: Some(qdrant::VectorsConfigDiff {
                config: Some(qdrant::vectors_config_diff::Config::ParamsMap(
                    qdrant::VectorParamsDiffMap { map: diff },
                )),
            }),
            timeout: Some(self.options.deadline().as_secs().max(1)),
            ..UpdateCollection::default()
        }))?;
        Ok(moved)
    }

    /// The spec and index settings of the collection, read from the server; `None` when
    /// it does not exist.
    pub(super) fn read_collection(&self) -> StoreResult<Option<(CollectionSpec, IndexSettings)>> {
        let Some(info) = self.info()? else {
            return Ok(None);
        };
        let spec = self.spec_of(&info)?;
        let index = self.index_of(&info, &spec)?;
        Ok(Some((spec, index)))
    }

    /// Reconstructs the spec from the server's collection info.
    pub(super) fn spec_of(&self, info: &CollectionInfo) -> StoreResult<CollectionSpec> {
        let params = info
            .config
            .as_ref()
            .and_then(|c| c.params.clone())
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        let map = match params {
            Some(vectors_config::Config::ParamsMap(map)) => map.map,
            _ => {
                return Err(StoreError::Backend(format!(
                    "collection {:?} has no named vectors",
                    self.collection
                )));
            }
        };
        let mut dims = BTreeSet::new();
        let mut vectors = Vec::new();
        for (name, params) in map {
            if params.distance != Distance::Cosine as i32 {
                return Err(StoreError::Backend(format!(
                    "vector {name:?} of collection {:?} is not cosine",
                    self.collection
                )));
            }
            dims.insert(params.size);
            vectors.push(name);
        }
        let dim = match dims.into_iter().collect::<Vec<_>>()[..] {
            [dim] => usize::try_from(dim).map_err(backend)?,
            ref dims => {
                return Err(StoreError::Backend(format!("mixed vector sizes {dims:?}")));
            }
        };
        let mut keyword_fields = Vec::new();
        let mut integer_fields = Vec::new();
        for (field, schema) in &info.payload_schema {
            if schema.data_type == PayloadSchemaType::Keyword as i32 {
                keyword_fields.push(field.clone());
            } else if schema.data_type == PayloadSchemaType::Integer as i32 {
                integer_fields.push(field.clone());
            }
        }
        normalize(&CollectionSpec {
            dim,
            vectors,
            keyword_fields,
            integer_fields,
        })
    }

    /// The index settings of a collection: the ones recorded in its metadata
    /// ([`INDEX_METADATA_KEY`]; the defaults when there are none), corrected by what the
    /// collection's config says it does. The config is the truth for the graph shape
    /// (`m`, `ef_construct`, `full_scan_threshold`, which no `full_scan_share` grows), the
    /// quantization and which segments get a graph (`indexing_threshold`): when the recorded
    /// kind no longer produces the configured threshold (someone changed the collection with
    /// another client, or it was made before imagelens kept settings), the kind is read from
    /// the threshold. Where the full vectors live (`on_disk`) is the recorded value (the
    /// default when none is): `optimize` moves vectors stored the other way to it, as it does
    /// in the embedded store.
    pub(super) fn index_of(
        &self,
        info: &CollectionInfo,
        spec: &CollectionSpec,
    ) -> StoreResult<IndexSettings> {
        let config = info.config.as_ref();
        let mut settings = match config.and_then(|c| c.metadata.get(INDEX_METADATA_KEY)) {
            None => IndexSettings::default(),
            Some(value) => {
                let recorded: IndexSettings = serde_json::from_value(from_value(value.clone()))
                    .map_err(|e| {
                        StoreError::Backend(format!(
                            "collection {:?}: metadata {INDEX_METADATA_KEY:?}: {e}",
                            self.collection
                        ))
                    })?;
                recorded.validate().map_err(|e| {
                    StoreError::Backend(format!(
                        "collection {:?}: metadata {INDEX_METADATA_KEY:?}: {e}",
                        self.collection
                    ))
                })?;
                recorded
            }
        };
        let number = |v: Option<u64>, what: &str| -> StoreResult<Option<usize>> {
            v.map(|v| {
                usize::try_from(v).map_err(|_| {
                    StoreError::Backend(format!("collection {what} {v} is out of range"))
                })
            })
            .transpose()
        };
        if let Some(hnsw) = config.and_then(|c| c.hnsw_config.as_ref()) {
            settings.m = number(hnsw.m, "hnsw m")?.unwrap_or(settings.m);
            settings.ef_construct =
                number(hnsw.ef_construct, "hnsw ef_construct")?.unwrap_or(settings.ef_construct);
            settings.full_scan_kb = number(hnsw.full_scan_threshold, "full_scan_threshold")?
                .unwrap_or(settings.full_scan_kb);
        }
        // The server keeps the threshold it is given: it grows with nothing.
        settings.full_scan_share = 0.0;
        settings.quantization = match config
            .and_then(|c| c.quantization_config.as_ref())
            .and_then(|q| q.quantization.as_ref())
        {
            None => Quantization::None,
            Some(quantization_config::Quantization::Scalar(s))
                if s.r#type == qdrant::QuantizationType::Int8 as i32 =>
            {
                Quantization::Int8
            }
            Some(other) => {
                return Err(StoreError::Backend(format!(
                    "collection {:?} uses a quantization imagelens does not manage: {other:?}",
                    self.collection
                )));
            }
        };
        let threshold = config
            .and_then(|c| c.optimizer_config.as_ref())
            .and_then(|o| o.indexing_threshold)
            .unwrap_or(QDRANT_DEFAULT_INDEXING_KB);
        if settings.indexing_threshold_kb(spec.dim) as u64 != threshold {
            let kb_per_point = (spec.dim * 4) as f64 / 1024.0;
            settings.kind = match threshold {
                0 => IndexKind::Exact,
                1 => IndexKind::Hnsw,
                kb => {
                    settings.auto_threshold =
                        ((kb as f64 / kb_per_point).floor() as usize).clamp(1, 1_000_000_000);
                    IndexKind::Auto
                }
            };
        }
        // A collection changed by hand may hold numbers our bounds refuse: say so.
        settings
            .validate()
            .map_err(|e| StoreError::Backend(format!("collection {:?}: {e}", self.collection)))?;
        Ok(settings)
    }

    pub(super) fn index(&self) -> StoreResult<IndexSettings> {
        self.index.read().map(|s| s.clone()).map_err(|_| poisoned())
    }

    /// The collection's config for `settings`: graph shape, which segments get a graph,
    /// and the int8 copies (quantile 0.99, kept in RAM) or none.
    #[allow(deprecated)] // `always_ram`: the 1.18 server does not know its successor `memory`.
    pub(super) fn index_config(
        spec: &CollectionSpec,
        settings: &IndexSettings,
    ) -> (
        HnswConfigDiff,
        OptimizersConfigDiff,
        Option<ScalarQuantization>,
    ) {
        let hnsw = HnswConfigDiff {
            m: Some(settings.m as u64),
            ef_construct: Some(settings.ef_construct as u64),
            full_scan_threshold: Some(settings.full_scan_kb as u64),
            ..HnswConfigDiff::default()
        };
        let optimizers = OptimizersConfigDiff {
            indexing_threshold: Some(settings.indexing_threshold_kb(spec.dim) as u64),
            ..OptimizersConfigDiff::default()
        };
        let int8 = (settings.quantization == Quantization::Int8).then_some(ScalarQuantization {
            r#type: qdrant::QuantizationType::Int8 as i32,
            quantile: Some(0.99),
            always_ram: Some(true),
            memory: None,
        });
        (hnsw, optimizers, int8)
    }

    /// The settings as collection metadata.
    pub(super) fn index_metadata(
        settings: &IndexSettings,
    ) -> StoreResult<HashMap<String, qdrant::Value>> {
        let json = serde_json::to_value(settings).map_err(backend)?;
        Ok(HashMap::from([(
            INDEX_METADATA_KEY.to_owned(),
            to_value(json),
        )]))
    }
}
