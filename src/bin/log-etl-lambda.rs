//! The Lambda function: builds what its job needs once per container (`LOG_ETL_JOB`: a scheduled
//! pass, or the compaction of closed hours), then serves events.

use lambda_runtime::{LambdaEvent, service_fn};
use log_etl::config::{Config, Job};
use log_etl::lambda::{self, Compaction, MetricsTarget};
use log_etl::pipeline::Pipeline;
use log_etl::store::Store;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    log_etl::logging::init();
    log_etl::batch::spool::remove_spill_dirs_on_signal()?;
    let config = Config::from_env()?;
    let metrics = MetricsTarget {
        namespace: config.metrics_namespace.clone(),
        function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| "log-etl".to_owned()),
    };
    let metrics = &metrics;
    match config.job {
        Job::Ingest => {
            let pipeline = Pipeline::for_bucket(&config).await?;
            if let Err(err) = pipeline.warm_up().await {
                tracing::warn!(error_type = err.error_type(), error = %err.chain(), "key not available at start-up");
            }
            let pipeline = &pipeline;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
                lambda::handle(pipeline, metrics, event).await
            }))
            .await
        }
        Job::Compact => {
            let store = Store::bucket_from_config(&config).await?;
            let compaction = &Compaction { store, config };
            lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
                lambda::handle_compaction(compaction, metrics, event).await
            }))
            .await
        }
    }
}
