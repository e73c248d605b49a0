//! The controller: runs operations against the image, commits their records, publishes images.
//!
//! Every mutating call follows one shape: under the controller lock, validate each item against a
//! scratch copy of the image (so later items see earlier ones), collect the records, make them
//! durable through the [`MetadataLog`], apply them, publish the new image, and only then answer.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::journal::{FileJournal, MetadataLog};
use crate::ops::cluster::{register_broker, BrokerRegistration};
use crate::ops::configs::{alter_topic_configs, incremental_alter_topic_configs, AlterOp};
use crate::ops::producer_ids::{allocate_producer_ids, ProducerIdBlock};
use crate::ops::topics::{create_partitions, create_topic, delete_topic, CreateTopicSpec, CreatedTopic, TopicDefaults};
use crate::ops::OpResult;
use crate::records::MetadataRecord;

/// What the controller needs to know at start.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: i32,
    /// Directory holding the metadata log.
    pub metadata_dir: PathBuf,
    pub defaults: TopicDefaults,
}

/// A single-node controller over a durable metadata log.
pub struct Controller {
    image: Mutex<MetadataImage>,
    log: Arc<dyn MetadataLog>,
    publish: watch::Sender<Arc<MetadataImage>>,
    defaults: TopicDefaults,
}

/// One partition-count change for [`Controller::create_partitions`].
#[derive(Debug, Clone)]
pub struct PartitionGrowth {
    pub topic: String,
    pub count: i32,
    pub assignments: Option<Vec<Vec<i32>>>,
}

impl Controller {
    /// Opens the metadata log under `config.metadata_dir` and replays it into the image.
    ///
    /// # Errors
    /// Fails when the log cannot be opened or read.
    pub fn open(config: &ControllerConfig) -> Result<Self, ControllerError> {
        let journal = FileJournal::open(&config.metadata_dir.join("metadata.journal"))?;
        Self::with_log(Arc::new(journal), config.defaults)
    }

    /// Builds a controller over any [`MetadataLog`], replaying what it holds.
    ///
    /// # Errors
    /// Fails when the log cannot be read.
    pub fn with_log(log: Arc<dyn MetadataLog>, defaults: TopicDefaults) -> Result<Self, ControllerError> {
        let mut image = MetadataImage::default();
        for record in log.read_all()? {
            image.apply(&record);
        }
        let (publish, _) = watch::channel(Arc::new(image.clone()));
        Ok(Self { image: Mutex::new(image), log, publish, defaults })
    }

    /// The newest committed image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.publish.borrow().clone()
    }

    /// A receiver that sees every newly published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.publish.subscribe()
    }

    async fn run<I, T>(
        &self,
        validate_only: bool,
        items: &[I],
        op: impl Fn(&MetadataImage, &I) -> Result<OpResult<T>, ControllerError>,
    ) -> Vec<Result<T, ControllerError>> {
        let mut image = self.image.lock().await;
        let mut scratch = image.clone();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(op(&scratch, item).map(|r| {
                for record in &r.records {
                    scratch.apply(record);
                }
                records.extend(r.records);
                r.response
            }));
        }
        if validate_only || records.is_empty() {
            return results;
        }
        if let Err(e) = self.commit(&mut image, records).await {
            return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
        }
        results
    }

    async fn commit(&self, image: &mut MetadataImage, records: Vec<MetadataRecord>) -> Result<(), ControllerError> {
        let log = Arc::clone(&self.log);
        let records = tokio::task::spawn_blocking(move || log.append(&records).map(|()| records))
            .await
            .map_err(|e| ControllerError::Storage(format!("metadata append task failed: {e}")))??;
        for record in &records {
            image.apply(record);
        }
        self.publish.send_replace(Arc::new(image.clone()));
        Ok(())
    }

    /// Creates topics; each gets its own result, in request order.
    pub async fn create_topics(
        &self,
        specs: &[CreateTopicSpec],
        validate_only: bool,
    ) -> Vec<Result<CreatedTopic, ControllerError>> {
        let defaults = self.defaults;
        // Records of earlier items are applied to the scratch image, so a name given twice in one
        // request (validate_only included) fails the second time.
        self.run(validate_only, specs, |image, spec| create_topic(image, spec, defaults)).await
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[String]) -> Vec<Result<uuid::Uuid, ControllerError>> {
        self.run(false, names, |image, name| delete_topic(image, name)).await
    }

    /// Grows topics' partition counts.
    pub async fn create_partitions(
        &self,
        growths: &[PartitionGrowth],
        validate_only: bool,
    ) -> Vec<Result<(), ControllerError>> {
        self.run(validate_only, growths, |image, g| create_partitions(image, &g.topic, g.count, g.assignments.clone()))
            .await
    }

    /// Replaces topics' config overrides (AlterConfigs).
    pub async fn alter_topic_configs(
        &self,
        changes: &[(String, std::collections::BTreeMap<String, String>)],
        validate_only: bool,
    ) -> Vec<Result<(), ControllerError>> {
        self.run(validate_only, changes, |image, (topic, configs)| alter_topic_configs(image, topic, configs)).await
    }

    /// Edits topics' config overrides (IncrementalAlterConfigs).
    pub async fn incremental_alter_topic_configs(
        &self,
        changes: &[(String, Vec<(String, AlterOp)>)],
        validate_only: bool,
    ) -> Vec<Result<(), ControllerError>> {
        self.run(validate_only, changes, |image, (topic, ops)| incremental_alter_topic_configs(image, topic, ops)).await
    }

    /// Hands `broker_id` a fresh block of producer ids.
    ///
    /// # Errors
    /// When the id space is exhausted or the block could not be made durable.
    pub async fn allocate_producer_ids(&self, broker_id: i32) -> Result<ProducerIdBlock, ControllerError> {
        let mut results = self.run(false, &[broker_id], |image, id| allocate_producer_ids(image, *id)).await;
        results.pop().unwrap_or_else(|| Err(ControllerError::InvalidRequest("no result".into())))
    }

    /// Registers a broker (or updates its endpoint).
    ///
    /// # Errors
    /// When the registration could not be made durable.
    pub async fn register_broker(&self, registration: BrokerRegistration) -> Result<(), ControllerError> {
        let mut results = self.run(false, &[registration], |image, reg| Ok(register_broker(image, reg))).await;
        results.pop().unwrap_or(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> ControllerConfig {
        ControllerConfig {
            node_id: 1,
            metadata_dir: dir.to_path_buf(),
            defaults: TopicDefaults { num_partitions: 2, replication_factor: 1 },
        }
    }

    #[tokio::test]
    async fn committed_metadata_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let controller = Controller::open(&config(dir.path())).expect("open");
        let registration = BrokerRegistration {
            node_id: 1,
            incarnation_id: uuid::Uuid::new_v4(),
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        };
        controller.register_broker(registration).await.expect("register");
        let spec =
            CreateTopicSpec { name: "a".into(), num_partitions: -1, replication_factor: -1, ..Default::default() };
        let dry = controller.create_topics(std::slice::from_ref(&spec), true).await;
        assert!(dry[0].is_ok());
        assert!(controller.image().topic_by_name("a").is_none(), "validate_only must not create");
        let rx = controller.subscribe();
        let created = controller.create_topics(&[spec.clone(), spec], false).await;
        assert!(created[0].is_ok());
        assert!(matches!(created[1], Err(ControllerError::TopicAlreadyExists(_))));
        assert!(rx.has_changed().unwrap_or(false));
        let block = controller.allocate_producer_ids(1).await.expect("pids");
        drop(controller);
        let reopened = Controller::open(&config(dir.path())).expect("reopen");
        let image = reopened.image();
        assert_eq!(image.topic_by_name("a").map(|t| t.partitions.len()), Some(2));
        let next = reopened.allocate_producer_ids(1).await.expect("pids");
        assert_eq!(next.first, block.first + block.size, "a producer id block is never handed out twice");
    }
}
