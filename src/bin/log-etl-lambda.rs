//! The Lambda function: builds what its job needs once per container (`LOG_ETL_JOB`: a scheduled
//! pass, the compaction of closed hours, a replay of quarantine, or a backfill of saved
//! responses), then serves events.

use lambda_runtime::{LambdaEvent, service_fn};
use log_etl::config::{Config, Job};
use log_etl::lambda::{self, Backfill, Compaction, MetricsTarget, Replay};
use log_etl::logging::error_chain;
use log_etl::pipeline::Pipeline;
use log_etl::store::Store;

fn main() -> Result<(), lambda_runtime::Error> {
    // Before any thread starts (the runtime's included): freed memory goes back to the system.
    log_etl::allocator::return_freed_memory();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<(), lambda_runtime::Error> {
    log_etl::logging::init();
    let hardware = log_etl::record::fernet::hardware();
    tracing::info!(
        aes_hardware = hardware.aes,
        sha256_hardware = hardware.sha256,
        "token decryption"
    );
    log_etl::batch::spool::remove_spill_dirs_on_signal()?;
    let config = Config::from_env()?;
    let metrics = MetricsTarget {
        namespace: config.metrics_namespace.clone(),
        function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| "log-etl".to_owned()),
    };
    let metrics = &metrics;
    let sdk = log_etl::aws::sdk_config(&config).await;
    let store = Store::bucket(&sdk, &config)?;
    match config.job {
        Job::Ingest => {
            config.require_api_url()?;
            let pipeline = Pipeline::new(&config, store, Some(&sdk))?;
            if let Err(err) = pipeline.warm_up().await {
                tracing::warn!(error_type = err.error_type(), error = %error_chain(&err), "key not available at start-up");
            }
            let pipeline = &pipeline;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
                lambda::handle(pipeline, metrics, event).await
            }))
            .await
        }
        Job::Compact => {
            let compaction = &Compaction {
                store,
                objects: config.objects.clone(),
                settings: config.compaction,
            };
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
                lambda::handle_compaction(compaction, metrics, event).await
            }))
            .await
        }
        Job::Replay => {
            let replay = &Replay {
                pipeline: Pipeline::new(&config, store, Some(&sdk))?,
                lookback_hours: config.compaction.lookback_hours,
            };
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
                lambda::handle_replay(replay, metrics, event).await
            }))
            .await
        }
        Job::Backfill => {
            let backfill = &Backfill {
                pipeline: Pipeline::new(&config, store.clone(), Some(&sdk))?,
                store,
                bucket: config.bucket.clone(),
            };
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
                lambda::handle_backfill(backfill, metrics, event).await
            }))
            .await
        }
    }
}
