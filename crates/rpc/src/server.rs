//! The serving side: accepts connections and answers each request frame with the handler's response, one request
//! at a time per connection (clients open more connections for concurrency).

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::frame::{read_frame, write_frame};
use crate::message::{Request, Response};

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// Serves until `shutdown` completes. Errors on one connection end that connection only.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    tokio::spawn(async move { serve_connection(stream, handler).await });
                }
                Err(e) => {
                    tracing::warn!("rpc accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve_connection<H: Handler>(mut stream: TcpStream, handler: Arc<H>) {
    let _ = stream.set_nodelay(true);
    loop {
        let request = match read_frame::<_, Request>(&mut stream).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("rpc connection closed: {e}");
                return;
            }
        };
        let response: Response = handler.handle(request).await;
        if let Err(e) = write_frame(&mut stream, &response).await {
            tracing::debug!("rpc write failed: {e}");
            return;
        }
    }
}
