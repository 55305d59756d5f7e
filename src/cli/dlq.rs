//! `orderflow dlq list|show|redrive`: the messages consumers parked after their last attempt.

use anyhow::Result;
use clap::Subcommand;
use orderflow_bus::dlq;

use crate::config::CommonArgs;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Parked messages, oldest first.
    List {
        /// Only those of this consumer.
        #[arg(long)]
        consumer: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One parked message in full: consumer, error, attempts, original subject and body.
    Show {
        /// Its sequence in the dead-letter stream (from `dlq list`).
        sequence: u64,
    },
    /// Send parked messages back to their consumer and remove them from the dead-letter stream.
    Redrive {
        /// The sequence of one parked message (from `dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        sequence: Option<u64>,
        /// Redrive every parked message (of --consumer, if given).
        #[arg(long)]
        all: bool,
        /// With --all: only this consumer's messages.
        #[arg(long, requires = "all")]
        consumer: Option<String>,
    },
}

pub(crate) async fn run(common: &CommonArgs, command: DlqCommand) -> Result<()> {
    // Listing and showing only read: they create no stream.
    let bus = if matches!(command, DlqCommand::Redrive { .. }) {
        crate::app::connect_bus(common, std::time::Duration::ZERO).await?
    } else {
        let bus = crate::app::open_bus(common).await?;
        let name = bus.dlq_stream_name();
        anyhow::ensure!(
            bus.find_stream(&name).await?.is_some(),
            "stream {name} does not exist (nothing was created; check --stream or ORDERFLOW_STREAM)"
        );
        bus
    };
    match command {
        DlqCommand::List {
            consumer,
            limit,
            json,
        } => {
            let parked = dlq::list(&bus, consumer.as_deref(), limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&parked)?);
            } else if parked.is_empty() {
                println!("no parked messages");
            } else {
                let rows: Vec<[String; 6]> = parked
                    .iter()
                    .map(|p| {
                        [
                            p.sequence.to_string(),
                            p.letter.consumer.clone(),
                            p.letter.attempts.to_string(),
                            p.letter.parked_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                            p.letter.original_subject.clone(),
                            p.letter.error.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    super::table::render(
                        [
                            "SEQ",
                            "CONSUMER",
                            "ATTEMPTS",
                            "PARKED AT",
                            "SUBJECT",
                            "ERROR"
                        ],
                        &rows
                    )
                );
            }
        }
        DlqCommand::Show { sequence } => {
            let parked = dlq::show(&bus, sequence).await?;
            let mut value = serde_json::to_value(&parked)?;
            // Show the original body as JSON when it is JSON.
            if let Ok(body) = serde_json::from_str::<serde_json::Value>(&parked.letter.body) {
                value["letter"]["body"] = body;
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        DlqCommand::Redrive {
            sequence,
            all,
            consumer,
        } => {
            let redriven = match (sequence, all) {
                (Some(sequence), false) => vec![dlq::redrive(&bus, sequence).await?],
                _ => dlq::redrive_all(&bus, consumer.as_deref()).await?,
            };
            for r in &redriven {
                println!(
                    "redriven {} to {} ({}, message id {})",
                    r.sequence, r.consumer, r.subject, r.message_id
                );
            }
            println!("{} message(s) redriven", redriven.len());
        }
    }
    Ok(())
}
