//! A load generator for Sluice (or any Kafka broker) built on librdkafka (the `rdkafka` crate).
//!
//! ```text
//! cargo run --release -p sluice --example load -- produce --bootstrap 127.0.0.1:9092 \
//!     --topic bench --records 200000 --size 1024 --acks all
//! cargo run --release -p sluice --example load -- consume --bootstrap 127.0.0.1:9092 \
//!     --topic bench --records 200000
//! cargo run --release -p sluice --example load -- first-produce --bootstrap 127.0.0.1:9092
//! cargo run --release -p sluice --example load -- latency --bootstrap 127.0.0.1:9092 \
//!     --topic lat --rate 20000 --seconds 20 --size 1024 --acks 1
//! ```
//! Prints one line of `key=value` figures: records/s, MB/s, and for produce the delivery latency
//! percentiles (from send to acknowledgement). `latency` produces at a fixed rate while a consumer
//! in the same process reads the topic, and reports end-to-end latency percentiles (from the time
//! each record was due to be sent, so a stalled producer is not hidden, to the time the consumer
//! saw it) from an HDR histogram.

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
    rate: u64,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("usage: load produce|consume|first-produce|latency [--bootstrap H:P] [--topic T] [--records N] [--size BYTES] [--acks 0|1|all] [--partitions N] [--replication-factor N] [--rate RECORDS_PER_S] [--seconds N]")?;
    let mut args = Args {
        mode,
        bootstrap: "127.0.0.1:9092".into(),
        topic: "bench".into(),
        records: 100_000,
        size: 1024,
        acks: "1".into(),
        partitions: 1,
        replication_factor: 1,
        rate: 10_000,
        seconds: 10,
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
            "--rate" => args.rate = num(&value)? as u64,
            "--seconds" => args.seconds = num(&value)? as u64,
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

/// Nanoseconds since the Unix epoch: producer and consumer share this process's clock.
fn epoch_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Fixed-rate produce with a consumer reading alongside; end-to-end latency from each record's
/// scheduled send time (first 8 payload bytes) to its arrival at the consumer.
async fn latency(args: &Args) -> Result<(), String> {
    create_topic(args).await?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "sluice-load-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|e| e.to_string())?;
    // Start every partition at its current end, so only this run's records are timed.
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        let (_, high) =
            consumer.fetch_watermarks(&args.topic, p, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        tpl.add_partition_offset(&args.topic, p, Offset::Offset(high)).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let total = args.rate * args.seconds;
    // Warm-up: one record per partition (due time 0, not timed) that both the producer and the
    // consumer must have seen before the clock starts, so connection set-up is not measured.
    let warm_partitions = u64::try_from(args.partitions).unwrap_or(1);
    let (warm_tx, warm_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || -> Result<hdrhistogram::Histogram<u64>, String> {
        // Microseconds, 1 us .. 60 s, 3 significant digits.
        let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        let (mut seen, mut warm) = (0u64, 0u64);
        let mut last_progress = Instant::now();
        while seen < total && last_progress.elapsed() < Duration::from_secs(30) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let now = epoch_nanos();
                let due = m.payload().and_then(|p| p.get(..8)).map_or(now, |b| {
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(b);
                    u64::from_be_bytes(raw)
                });
                if due == 0 {
                    warm += 1;
                    if warm == warm_partitions {
                        let _ = warm_tx.send(());
                    }
                    continue;
                }
                hist.saturating_record((now.saturating_sub(due) / 1000).max(1));
                seen += 1;
                last_progress = Instant::now();
            }
        }
        Ok(hist)
    });
    let producer = producer(args)?;
    let mut payload = vec![b'x'; args.size.max(8)];
    payload[..8].copy_from_slice(&0u64.to_be_bytes());
    for p in 0..args.partitions {
        let record = FutureRecord::to(&args.topic).partition(p).key("warm-up").payload(&payload[..]);
        producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| format!("warm-up: {e}"))?;
    }
    let warmed = tokio::task::spawn_blocking(move || warm_rx.recv_timeout(Duration::from_secs(30)));
    warmed.await.map_err(|e| e.to_string())?.map_err(|_| "the consumer did not see the warm-up records")?;
    let start = Instant::now();
    let start_epoch = epoch_nanos();
    let mut pending = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut failed = 0u64;
    for i in 0..total {
        let due = Duration::from_nanos(i.saturating_mul(1_000_000_000) / args.rate.max(1));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            if wait > Duration::from_micros(200) {
                tokio::time::sleep(wait).await;
            }
        }
        let due_epoch = start_epoch + u64::try_from(due.as_nanos()).unwrap_or(u64::MAX);
        payload[..8].copy_from_slice(&due_epoch.to_be_bytes());
        let key = i.to_be_bytes();
        let record = FutureRecord::to(&args.topic).key(&key[..]).payload(&payload[..]);
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err(_) => failed += 1,
        }
    }
    for delivery in pending {
        if !matches!(delivery.await, Ok(Ok(_))) {
            failed += 1;
        }
    }
    let hist = reader.join().map_err(|_| "consumer thread panicked".to_string())??;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "mode=latency acks={} rate={} records={} received={} failed={} size={} latency_ms_p50={:.2} latency_ms_p99={:.2} latency_ms_p999={:.2} latency_ms_max={:.2}",
        args.acks,
        args.rate,
        total,
        hist.len(),
        failed,
        args.size,
        ms(0.50),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1000.0,
    );
    if failed > 0 || hist.len() < total {
        return Err(format!("{failed} sends failed, {} of {total} records received", hist.len()));
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
            "latency" => latency(&args).await,
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
