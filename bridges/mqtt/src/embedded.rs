//! The embedded broker (rumqttd), for set-ups without a broker of their own and for the demo:
//! MQTT 3.1.1 on a loopback address, in memory, on its own threads for the life of the process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Whether an MQTT broker answers on `listen`: it accepts a 3.1.1 connection (a clean session
/// named `switchboard-probe`, closed at once).
async fn answers(listen: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CLIENT_ID: &[u8] = b"switchboard-probe";
    let Ok(mut stream) = tokio::net::TcpStream::connect(listen).await else {
        return false;
    };
    // CONNECT: protocol "MQTT" level 4, clean session, keep-alive 60 s, the client id.
    let mut connect = vec![0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0];
    connect.push(u8::try_from(CLIENT_ID.len()).unwrap_or(u8::MAX));
    connect.extend_from_slice(CLIENT_ID);
    connect[1] = u8::try_from(connect.len() - 2).unwrap_or(u8::MAX);
    let mut connack = [0_u8; 4];
    let answered = async {
        stream.write_all(&connect).await?;
        // Then the connection is closed without a DISCONNECT packet: rumqttd counts that
        // packet and the closing as two disconnections, and logs an error for the second.
        stream.read_exact(&mut connack).await.map(drop)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), answered).await,
        Ok(Ok(()))
    ) && connack == [0x20, 2, 0, 0]
}

/// How long the broker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the embedded broker on `listen`, taking payloads up to `max_payload_bytes`; returns
/// once it accepts connections. The error says why it cannot (address in use, …).
pub async fn start(listen: SocketAddr, max_payload_bytes: usize) -> Result<(), String> {
    // Started once per process: a bridge started again in the same process (tests, a
    // restart of the runtime) finds it running.
    static STARTED: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());
    if STARTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&listen)
    {
        return Ok(());
    }
    // rumqttd reports a failed bind only in its own thread's log: try the address first.
    std::net::TcpListener::bind(listen)
        .map_err(|e| format!("the embedded MQTT broker cannot listen on {listen}: {e}"))?;
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: max_payload_bytes,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "switchboard".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: rumqttd::Strategy::default(),
        },
        v4: Some(HashMap::from([("switchboard".to_owned(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".to_owned())
        .spawn(move || {
            if let Err(e) = Broker::new(config).start() {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        })
        .map_err(|e| format!("cannot start the embedded MQTT broker's thread: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !answers(listen).await {
        if Instant::now() > deadline {
            return Err(format!(
                "the embedded MQTT broker did not listen on {listen} within {} s",
                START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    STARTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(listen);
    tracing::info!(%listen, "the embedded MQTT broker is listening (MQTT 3.1.1)");
    Ok(())
}
