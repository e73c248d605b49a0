//! A load generator for Sluice (or any Kafka broker) built on librdkafka (the `rdkafka` crate).
//!
//! ```text
//! cargo run --release -p sluice --example load -- produce --bootstrap 127.0.0.1:9092 \
//!     --topic bench --records 200000 --size 1024 --acks all
//! cargo run --release -p sluice --example load -- consume --bootstrap 127.0.0.1:9092 \
//!     --topic bench --records 200000
//! cargo run --release -p sluice --example load -- first-produce --bootstrap 127.0.0.1:9092
//! ```
//! Prints one line of `key=value` figures: records/s, MB/s, and for produce the delivery latency
//! percentiles (from send to acknowledgement).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

struct Args {
    mode: String,
    bootstrap: String,
    topic: String,
    records: usize,
    size: usize,
    acks: String,
    partitions: i32,
    replication_factor: i32,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("usage: load produce|consume|first-produce [--bootstrap H:P] [--topic T] [--records N] [--size BYTES] [--acks 0|1|all] [--partitions N] [--replication-factor N]")?;
    let mut args = Args {
        mode,
        bootstrap: "127.0.0.1:9092".into(),
        topic: "bench".into(),
        records: 100_000,
        size: 1024,
        acks: "1".into(),
        partitions: 1,
        replication_factor: 1,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = value,
            "--topic" => args.topic = value,
            "--records" => args.records = num(&value)?,
            "--size" => args.size = num(&value)?,
            "--acks" => args.acks = value,
            "--partitions" => args.partitions = i32::try_from(num(&value)?).map_err(|e| e.to_string())?,
            "--replication-factor" => {
                args.replication_factor = i32::try_from(num(&value)?).map_err(|e| e.to_string())?;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn producer(args: &Args) -> Result<FutureProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", &args.acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("enable.idempotence", if args.acks == "all" { "true" } else { "false" })
        .create()
        .map_err(|e| e.to_string())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Creates the topic with `--partitions` partitions and `--replication-factor` replicas (an
/// existing topic is fine).
async fn create_topic(args: &Args) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &args.bootstrap).create().map_err(|e| e.to_string())?;
    let topic = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(args.replication_factor));
    let results = admin.create_topics([&topic], &AdminOptions::new()).await.map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("create topic {t}: {e}")),
        }
    }
    Ok(())
}

async fn produce(args: &Args) -> Result<(), String> {
    create_topic(args).await?;
    let producer = producer(args)?;
    let payload = vec![b'x'; args.size];
    let start = Instant::now();
    let mut pending = Vec::with_capacity(args.records);
    for i in 0..args.records {
        let key = (i as u64).to_be_bytes();
        let sent_at = Instant::now();
        let record = FutureRecord::to(&args.topic).key(&key[..]).payload(&payload[..]);
        let delivery = producer.send_result(record).map_err(|(e, _)| e.to_string())?;
        pending.push(async move {
            let result = delivery.await;
            (result, sent_at.elapsed())
        });
    }
    let results = futures::future::join_all(pending).await;
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies_us = Vec::with_capacity(results.len());
    let mut failed = 0usize;
    for (result, latency) in results {
        match result {
            Ok(Ok(_)) => latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)),
            _ => failed += 1,
        }
    }
    latencies_us.sort_unstable();
    let ok = latencies_us.len();
    println!(
        "mode=produce acks={} records={} failed={} size={} seconds={:.3} records_per_s={:.0} mb_per_s={:.1} latency_ms_p50={:.2} latency_ms_p99={:.2} latency_ms_max={:.2}",
        args.acks,
        ok,
        failed,
        args.size,
        elapsed,
        ok as f64 / elapsed,
        (ok * args.size) as f64 / elapsed / 1e6,
        percentile(&latencies_us, 0.50),
        percentile(&latencies_us, 0.99),
        percentile(&latencies_us, 1.0),
    );
    if failed > 0 {
        return Err(format!("{failed} deliveries failed"));
    }
    Ok(())
}

fn consume(args: &Args) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "sluice-load")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer.fetch_metadata(Some(&args.topic), Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for topic in metadata.topics() {
        for p in topic.partitions() {
            tpl.add_partition_offset(&args.topic, p.id(), Offset::Beginning).map_err(|e| e.to_string())?;
        }
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    let (mut count, mut bytes) = (0usize, 0usize);
    while count < args.records && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            count += 1;
            bytes += m.payload().map_or(0, <[u8]>::len);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "mode=consume records={count} seconds={elapsed:.3} records_per_s={:.0} mb_per_s={:.1}",
        count as f64 / elapsed,
        bytes as f64 / elapsed / 1e6
    );
    if count < args.records {
        return Err(format!("consumed only {count} of {} records", args.records));
    }
    Ok(())
}

/// Retries one produce until it is acknowledged: measures how soon a starting broker serves.
async fn first_produce(args: &Args) -> Result<(), String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(producer) = producer(args) {
            let record = FutureRecord::to(&args.topic).key("k").payload("v");
            if producer.send(record, Duration::from_secs(1)).await.is_ok() {
                println!("mode=first-produce ms={:.1}", start.elapsed().as_secs_f64() * 1000.0);
                let _ = producer.flush(Duration::from_secs(1));
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err("no produce succeeded within 60 s".into())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match parse_args() {
        Ok(args) => match args.mode.as_str() {
            "produce" => produce(&args).await,
            "consume" => consume(&args),
            "first-produce" => first_produce(&args).await,
            other => Err(format!("unknown mode {other}")),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
