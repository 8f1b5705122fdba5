//! `onex topics`.

use onex_core::{EventBus, Result, TopicInfo, TopicSpec};

use crate::cli::TopicsAction;

fn print_topic(t: &TopicInfo, json: bool) {
    if json {
        println!("{}", serde_json::to_string(t).expect("topic serializes"));
    } else {
        println!("{}  partitions={} retained={}", t.name, t.partition_count, t.retained());
        for p in &t.partitions {
            println!("  [{}] low={} high={}", p.partition, p.low_watermark, p.high_watermark);
        }
        for (k, v) in &t.config {
            println!("  {k}={v}");
        }
    }
}

pub(crate) async fn run(bus: &dyn EventBus, action: TopicsAction, json: bool) -> Result<()> {
    let admin = bus.admin();
    match action {
        TopicsAction::List => {
            for t in admin.list_topics().await? {
                if json {
                    println!("{}", serde_json::json!({"name": t.name, "partitions": t.partition_count, "retained": t.retained()}));
                } else {
                    println!("{}  partitions={} retained={}", t.name, t.partition_count, t.retained());
                }
            }
        }
        TopicsAction::Create { name, partitions, config } => {
            let mut spec = TopicSpec::new(&name, partitions);
            spec.config = config.into_iter().collect();
            admin.create_topic(spec).await?;
            if json {
                println!("{}", serde_json::json!({"created": name, "partitions": partitions}));
            } else {
                println!("created {name} with {partitions} partitions");
            }
        }
        TopicsAction::Describe { name } => print_topic(&admin.describe_topic(&name).await?, json),
        TopicsAction::Delete { name } => {
            admin.delete_topic(&name).await?;
            if json {
                println!("{}", serde_json::json!({"deleted": name}));
            } else {
                println!("deleted {name}");
            }
        }
    }
    Ok(())
}
