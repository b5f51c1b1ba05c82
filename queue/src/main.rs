//! `corral-queue`: command-line producer, consumer and inspector.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use corral_queue::object_store::local::LocalFileSystem;
use corral_queue::object_store::ObjectStore;
use corral_queue::{connect, AnyDelivery, Layout, Message, Meta, PutOutcome, Queue, QueueError};

const USAGE: &str = "\
usage: corral-queue [--hosts HOSTS] [--session-timeout DUR] COMMAND [OPTIONS] PATH ...

HOSTS defaults to $CORRAL_QUEUE_HOSTS, else 127.0.0.1:2181.
DUR is a number with an optional unit: 250ms, 2s, 5m, 1h (bare number = seconds).

--layout curator takes --lock-path LOCKS (default PATH-locks), the
`.lockPath(...)` the Java side's QueueBuilder uses.

Native queues: --blob-dir DIR [--blob-threshold BYTES] (put, take, consume,
dlq, sweep-blobs) keeps payloads above BYTES (default 262144) as files under
DIR/PATH/ and enqueues a reference (claim-check); every producer and
consumer of the queue needs the same DIR.

commands:
  put [--layout native|kazoo|kazoo-queue|curator] [--priority P] [--delay DUR] [--key K]
      [--max-items N] [--max-bytes N] [--max-attempts N] [--lease DUR]
      [--wait DUR] [--no-create] PATH MESSAGE...
        Enqueue each MESSAGE. Creates a missing native queue with the given
        bounds/options. --wait blocks up to DUR while the queue is full.
  take [--layout L] [--ack|--no-ack] [--timeout DUR] PATH
        Claim one message and print it. --ack (default) removes it;
        --no-ack leaves it to be redelivered. Exit status 3 if none arrived
        within --timeout (default: wait forever).
  stats PATH
        Depth, in-flight, oldest age, redeliveries, DLQ size, bounds.
  dlq [--limit N] [--requeue] PATH
        List dead letters (native layout); --requeue moves them back to the
        tail of the queue with fresh attempt counts.
  sweep-blobs --blob-dir DIR [--grace DUR] PATH
        Delete blobs older than --grace (default 1h) that no message or
        dead letter references: orphans of crashed puts and acks. The grace
        must exceed the longest put (including --wait).
  consume [--layout L] [--max N] [--idle DUR] [--nack-delay DUR] PATH -- COMMAND [ARGS...]
        Run COMMAND once per message with the payload on stdin (and
        CORRAL_QUEUE_ID / CORRAL_QUEUE_ATTEMPT in its environment). Exit 0
        acks; anything else nacks (redelivery after --nack-delay). The lease
        is extended while COMMAND runs. Stops after --max messages or after
        --idle without messages; otherwise runs until killed.
";

fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| anyhow!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("bad duration unit in {s:?} (use ms, s, m or h)"),
    };
    if !(0.0..=1e9).contains(&secs) {
        bail!("duration {s:?} out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

struct Args {
    rest: Vec<String>,
    pos: usize,
}

impl Args {
    fn next(&mut self) -> Option<String> {
        let a = self.rest.get(self.pos).cloned();
        self.pos += 1;
        a
    }

    fn value(&mut self, flag: &str) -> Result<String> {
        self.next().ok_or_else(|| anyhow!("{flag} needs a value"))
    }
}

#[derive(Default)]
struct Opts {
    layout: Option<Layout>,
    priority: Option<u16>,
    delay: Option<Duration>,
    key: Option<String>,
    meta: Meta,
    wait: Option<Duration>,
    no_create: bool,
    ack: bool,
    timeout: Option<Duration>,
    limit: usize,
    max: Option<u64>,
    idle: Option<Duration>,
    nack_delay: Duration,
    requeue: bool,
    lock_path: Option<String>,
    blob_dir: Option<std::path::PathBuf>,
    blob_threshold: Option<usize>,
    grace: Option<Duration>,
    positional: Vec<String>,
    command: Vec<String>,
}

fn parse_opts(args: &mut Args) -> Result<Opts> {
    let mut o = Opts { ack: true, limit: 100, ..Opts::default() };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--layout" => o.layout = Some(args.value(&a)?.parse()?),
            "--priority" => o.priority = Some(args.value(&a)?.parse().context("--priority must be 0..=999")?),
            "--delay" => o.delay = Some(parse_duration(&args.value(&a)?)?),
            "--key" => o.key = Some(args.value(&a)?),
            "--max-items" => o.meta.max_items = Some(args.value(&a)?.parse().context("--max-items")?),
            "--max-bytes" => o.meta.max_bytes = Some(args.value(&a)?.parse().context("--max-bytes")?),
            "--max-attempts" => o.meta.max_attempts = args.value(&a)?.parse().context("--max-attempts")?,
            "--lease" => o.meta.lease_ms = parse_duration(&args.value(&a)?)?.as_millis() as u64,
            "--wait" => o.wait = Some(parse_duration(&args.value(&a)?)?),
            "--no-create" => o.no_create = true,
            "--ack" => o.ack = true,
            "--no-ack" => o.ack = false,
            "--timeout" => o.timeout = Some(parse_duration(&args.value(&a)?)?),
            "--limit" => o.limit = args.value(&a)?.parse().context("--limit")?,
            "--max" => o.max = Some(args.value(&a)?.parse().context("--max")?),
            "--idle" => o.idle = Some(parse_duration(&args.value(&a)?)?),
            "--nack-delay" => o.nack_delay = parse_duration(&args.value(&a)?)?,
            "--requeue" => o.requeue = true,
            "--lock-path" => o.lock_path = Some(args.value(&a)?),
            "--blob-dir" => o.blob_dir = Some(args.value(&a)?.into()),
            "--blob-threshold" => o.blob_threshold = Some(args.value(&a)?.parse().context("--blob-threshold must be a number of bytes")?),
            "--grace" => o.grace = Some(parse_duration(&args.value(&a)?)?),
            "--" => {
                while let Some(c) = args.next() {
                    o.command.push(c);
                }
            },
            s if s.starts_with("--") && o.positional.is_empty() => bail!("unknown option {s}"),
            _ => o.positional.push(a),
        }
    }
    Ok(o)
}

const DEFAULT_BLOB_THRESHOLD: usize = 256 * 1024;

/// `--blob-dir`: a local directory as the claim-check blob store.
#[derive(Clone)]
struct Blobs {
    store: Arc<dyn ObjectStore>,
    threshold: usize,
}

fn blobs(o: &Opts) -> Result<Option<Blobs>> {
    let Some(dir) = &o.blob_dir else {
        if o.blob_threshold.is_some() {
            bail!("--blob-threshold needs --blob-dir");
        }
        return Ok(None);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create blob directory {}", dir.display()))?;
    let store = LocalFileSystem::new_with_prefix(dir).with_context(|| format!("blob directory {}", dir.display()))?;
    Ok(Some(Blobs { store: Arc::new(store), threshold: o.blob_threshold.unwrap_or(DEFAULT_BLOB_THRESHOLD) }))
}

fn with_blobs(q: Queue, blobs: &Option<Blobs>) -> Result<Queue> {
    Ok(match (q, blobs) {
        (Queue::Native(nq), Some(b)) => Queue::Native(Box::new(nq.with_blob_store(b.store.clone(), "", b.threshold))),
        (q, Some(_)) => bail!("--blob-dir applies to native queues only, not {}", q.layout_name()),
        (q, None) => q,
    })
}

async fn open(client: &zookeeper_client::Client, path: &str, layout: Option<Layout>, locks: Option<&str>, blobs: &Option<Blobs>) -> Result<Queue> {
    let q = match layout {
        Some(Layout::Curator) if locks.is_some() => Queue::open_curator(client, path, locks, false).await?,
        Some(l) => Queue::open(client, path, l, false, Meta::default()).await?,
        None => Queue::open_existing(client, path).await?,
    };
    with_blobs(q, blobs)
}

fn print_delivery(d: &AnyDelivery) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for p in d.payloads() {
        out.write_all(p)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

async fn run() -> Result<ExitCode> {
    let mut args = Args { rest: std::env::args().skip(1).collect(), pos: 0 };
    let mut hosts = std::env::var("CORRAL_QUEUE_HOSTS").unwrap_or_else(|_| "127.0.0.1:2181".into());
    let mut session = Duration::from_secs(10);
    let cmd = loop {
        match args.next().as_deref() {
            Some("--hosts") => hosts = args.value("--hosts")?,
            Some("--session-timeout") => session = parse_duration(&args.value("--session-timeout")?)?,
            Some("-h" | "--help" | "help") => {
                print!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            },
            Some(c) if !c.starts_with('-') => break c.to_string(),
            Some(c) => bail!("unknown option {c}\n\n{USAGE}"),
            None => bail!("missing command\n\n{USAGE}"),
        }
    };
    let o = parse_opts(&mut args)?;
    if o.lock_path.is_some() && o.layout != Some(Layout::Curator) {
        bail!("--lock-path applies to --layout curator only");
    }
    let path = o.positional.first().cloned().ok_or_else(|| anyhow!("missing PATH\n\n{USAGE}"))?;
    corral_queue::codec::validate_path(&path).map_err(|r| anyhow!("invalid queue path {path:?}: {r}"))?;
    if !matches!(cmd.as_str(), "put" | "take" | "stats" | "dlq" | "consume" | "sweep-blobs") {
        bail!("unknown command {cmd:?}\n\n{USAGE}");
    }
    let blobs = blobs(&o)?;
    if cmd == "sweep-blobs" && blobs.is_none() {
        bail!("sweep-blobs needs --blob-dir");
    }
    let client = connect(&hosts, session).await?;

    match cmd.as_str() {
        "put" => {
            let msgs = &o.positional[1..];
            if msgs.is_empty() {
                bail!("put needs at least one MESSAGE");
            }
            if o.key.is_some() && msgs.len() > 1 {
                bail!("--key applies to a single MESSAGE");
            }
            let q = match o.layout {
                Some(Layout::Curator) if o.lock_path.is_some() => Queue::open_curator(&client, &path, o.lock_path.as_deref(), !o.no_create).await?,
                Some(l) => Queue::open(&client, &path, l, !o.no_create, o.meta.clone()).await?,
                None => match Queue::open_existing(&client, &path).await {
                    Err(QueueError::NotFound(_)) if !o.no_create => Queue::open(&client, &path, Layout::Native, true, o.meta.clone()).await?,
                    r => r?,
                },
            };
            let q = with_blobs(q, &blobs)?;
            for m in msgs {
                let mut msg = Message::new(m.as_bytes()).priority(o.priority.unwrap_or(corral_queue::codec::DEFAULT_PRIORITY));
                msg.delay = o.delay.unwrap_or_default();
                msg.key = o.key.clone();
                let res = match (&q, o.wait) {
                    (Queue::Native(nq), Some(w)) => nq.put_wait(msg, w).await,
                    _ => q.put(msg).await,
                };
                match res? {
                    PutOutcome::Enqueued(id) if q.layout_name() == "native" => println!("enqueued {id}"),
                    PutOutcome::Enqueued(_) => println!("enqueued"),
                    PutOutcome::Duplicate { key, original } => {
                        println!("duplicate key {key:?}{}", original.map(|i| format!(" (already enqueued as {i})")).unwrap_or_default())
                    },
                }
            }
            Ok(ExitCode::SUCCESS)
        },
        "take" => {
            let q = open(&client, &path, o.layout, o.lock_path.as_deref(), &blobs).await?;
            let Some(d) = q.take(o.timeout).await? else {
                eprintln!("no message within {:?}", o.timeout.unwrap_or_default());
                return Ok(ExitCode::from(3));
            };
            print_delivery(&d)?;
            if o.ack {
                q.ack(&d).await?;
            } else {
                q.nack(&d, Duration::ZERO).await?;
            }
            Ok(ExitCode::SUCCESS)
        },
        "stats" => {
            let q = open(&client, &path, o.layout, o.lock_path.as_deref(), &blobs).await?;
            let s = q.stats().await?;
            let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            println!("layout: {}", s.layout);
            println!("depth: {}", s.depth);
            println!("in_flight: {}", s.in_flight);
            println!("oldest_age_ms: {}", s.oldest_age.map_or("-".to_string(), |d| d.as_millis().to_string()));
            println!("bytes: {}", opt(s.bytes));
            println!("redeliveries: {}", opt(s.redeliveries));
            println!("dlq: {}", opt(s.dlq));
            println!("waiting_consumers: {}", opt(s.waiting_consumers));
            println!("max_items: {}", opt(s.max_items));
            println!("max_bytes: {}", opt(s.max_bytes));
            Ok(ExitCode::SUCCESS)
        },
        "dlq" => {
            let q = open(&client, &path, o.layout, o.lock_path.as_deref(), &blobs).await?;
            let Queue::Native(nq) = q else { bail!("the {} layout has no dead-letter queue", q.layout_name()) };
            if o.requeue {
                println!("requeued {}", nq.requeue_dead_letters(o.limit).await?);
                return Ok(ExitCode::SUCCESS);
            }
            for d in nq.dlq(o.limit).await? {
                let payload = match (&d.blob, &d.blob_error) {
                    (Some(r), Some(e)) => format!("[blob {}, {} bytes: {e}]", r.key, r.size),
                    _ => String::from_utf8_lossy(&d.payload).into_owned(),
                };
                println!("{}\tattempts={}\t{payload}", d.id, d.attempts);
            }
            Ok(ExitCode::SUCCESS)
        },
        "sweep-blobs" => {
            let q = open(&client, &path, Some(Layout::Native), None, &blobs).await?;
            let Queue::Native(nq) = q else { unreachable!() };
            let r = nq.sweep_blobs(o.grace.unwrap_or(Duration::from_secs(3600))).await?;
            println!("listed {}, deleted {}, referenced {}, young {}, foreign {}", r.listed, r.deleted, r.referenced, r.young, r.foreign);
            Ok(ExitCode::SUCCESS)
        },
        "consume" => consume(client, &hosts, session, &path, &o, &blobs).await,
        _ => unreachable!(),
    }
}

async fn consume(client: zookeeper_client::Client, hosts: &str, session: Duration, path: &str, o: &Opts, blobs: &Option<Blobs>) -> Result<ExitCode> {
    if o.command.is_empty() {
        bail!("consume needs a command after --");
    }
    let mut q = open(&client, path, o.layout, o.lock_path.as_deref(), blobs).await?;
    let mut done = 0u64;
    let mut failed = 0u64;
    while o.max.is_none_or(|m| done < m) {
        match consume_one(&q, o).await {
            Ok(None) => break,
            Ok(Some(ok)) => {
                done += 1;
                failed += u64::from(!ok);
            },
            // A long-running consumer outlives sessions (partitions, server
            // restarts): start a new one. Whatever we held is redelivered.
            Err(e) if matches!(e.downcast_ref::<QueueError>(), Some(QueueError::SessionExpired)) => {
                eprintln!("corral-queue: session expired; reconnecting");
                q = reconnect(hosts, session, path, o.layout, o.lock_path.as_deref(), blobs).await?;
            },
            Err(e) => return Err(e),
        }
    }
    eprintln!("corral-queue: processed {done} message(s), {failed} failed");
    Ok(ExitCode::SUCCESS)
}

/// Retries for a while: the reason the session expired (partition, server
/// restart) is usually still there for a moment.
async fn reconnect(hosts: &str, session: Duration, path: &str, layout: Option<Layout>, locks: Option<&str>, blobs: &Option<Blobs>) -> Result<Queue> {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = async { open(&connect(hosts, session).await?, path, layout, locks, blobs).await };
        match attempt.await {
            Ok(q) => return Ok(q),
            Err(e) if tokio::time::Instant::now() < give_up => {
                eprintln!("corral-queue: reconnect failed ({e:#}); retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            },
            Err(e) => return Err(e.context("giving up reconnecting after 5 minutes")),
        }
    }
}

/// Takes and processes one message. `Ok(None)` when idle for `--idle`;
/// otherwise whether the command succeeded.
async fn consume_one(q: &Queue, o: &Opts) -> Result<Option<bool>> {
    let lease = match q {
        Queue::Native(nq) => Duration::from_millis(nq.meta().lease_ms.max(300)),
        Queue::Lock(_) => Duration::from_secs(3600),
    };
    let Some(d) = q.take(o.idle).await? else { return Ok(None) };
    let mut child = tokio::process::Command::new(&o.command[0])
        .args(&o.command[1..])
        .env("CORRAL_QUEUE_ID", d.id())
        .env("CORRAL_QUEUE_ATTEMPT", d.attempt().map_or(String::new(), |a| a.to_string()))
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {:?}", o.command[0]))?;
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<u8> = d.payloads().join(&b"\n"[..]);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&input).await;
    });
    let mut delivery = d;
    // Keep the lease alive while the command runs. A lost claim means the
    // message may be redelivered elsewhere: stop the command.
    let status = loop {
        tokio::select! {
            st = child.wait() => break Some(st?),
            _ = tokio::time::sleep(lease / 3) => {
                if let (Queue::Native(nq), AnyDelivery::Native(nd)) = (q, &mut delivery) {
                    if let Err(e) = nq.extend(nd, lease).await {
                        eprintln!("corral-queue: lease on {} lost: {e}", nd.id);
                        let _ = child.kill().await;
                        break None;
                    }
                }
            },
        }
    };
    let _ = writer.await;
    match status {
        Some(st) if st.success() => {
            q.ack(&delivery).await.with_context(|| format!("ack {}", delivery.id()))?;
            Ok(Some(true))
        },
        Some(st) => {
            eprintln!("corral-queue: {} failed ({st}); returning it to the queue", delivery.id());
            q.nack(&delivery, o.nack_delay).await.with_context(|| format!("nack {}", delivery.id()))?;
            Ok(Some(false))
        },
        None => Ok(Some(false)),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("corral-queue: {e:#}");
            ExitCode::FAILURE
        },
    }
}
