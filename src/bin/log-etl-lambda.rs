//! The Lambda function: builds the pipeline once per container, then serves scheduled events.

use lambda_runtime::{LambdaEvent, service_fn};
use log_etl::config::Config;
use log_etl::lambda::{self, MetricsTarget};
use log_etl::pipeline::Pipeline;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    log_etl::logging::init();
    let config = Config::from_env()?;
    let pipeline = Pipeline::for_bucket(&config).await?;
    if let Err(err) = pipeline.warm_up().await {
        tracing::warn!(error_type = err.error_type(), error = %err.chain(), "key not available at start-up");
    }
    let metrics = MetricsTarget {
        namespace: config.metrics_namespace.clone(),
        function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| "log-etl".to_owned()),
    };
    let (pipeline, metrics) = (&pipeline, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        lambda::handle(pipeline, metrics, event).await
    }))
    .await
}
